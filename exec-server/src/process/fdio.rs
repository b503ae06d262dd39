//! Non-blocking reads and writes on pipe and PTY file descriptors registered with tokio.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Registers `fd` with the runtime after making it non-blocking.
pub fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
    fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    // SAFETY: `fd` is an owned, open descriptor that the AsyncFd owns from here on and
    // never replaces or closes while registered.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(io::Error::from)
}

/// One read syscall; `Ok(None)` = would block. EIO (a PTY whose terminal side is closed
/// by every holder) reads as end of file.
pub fn try_read(fd: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    match nix::unistd::read(fd.get_ref().as_fd(), buf) {
        Ok(n) => Ok(Some(n)),
        Err(Errno::EAGAIN) => Ok(None),
        Err(Errno::EIO) => Ok(Some(0)),
        Err(Errno::EINTR) => try_read(fd, buf),
        Err(e) => Err(e.into()),
    }
}

/// Reads at least one byte, or returns 0 at end of file.
pub async fn read(fd: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut guard = fd.readable().await?;
        match try_read(fd, buf)? {
            Some(n) => return Ok(n),
            None => guard.clear_ready(),
        }
    }
}

/// Writes all of `data`.
pub async fn write_all(fd: &AsyncFd<OwnedFd>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let mut guard = fd.writable().await?;
        match nix::unistd::write(fd.get_ref(), data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EAGAIN) => guard.clear_ready(),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
