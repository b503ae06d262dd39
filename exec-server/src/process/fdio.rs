//! Non-blocking reads and writes on pipe and PTY file descriptors registered with tokio.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use bytes::Bytes;

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

/// Largest chunk one read returns.
pub const MAX_CHUNK: usize = 1 << 20;

/// Chunk size for a process whose ring keeps `retention` bytes: at most half of it, so
/// the ring never has to keep a chunk larger than its own budget.
pub fn chunk_limit(retention: usize) -> usize {
    (retention / 2).clamp(MIN_READ, MAX_CHUNK)
}
/// Buffer used when the kernel reports nothing queued (end of file, or a race).
const MIN_READ: usize = 4096;

/// Bytes queued for reading on a pipe or PTY (FIONREAD), if the kernel says.
fn queued(fd: &OwnedFd) -> Option<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer we pass.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    (rc == 0 && n > 0).then_some(n as usize)
}

/// One read syscall into a buffer sized to what is queued, so the chunk is kept without
/// copying and without slack. `Ok(None)` = would block; an empty chunk = end of file.
pub fn try_read_chunk(fd: &AsyncFd<OwnedFd>, limit: usize) -> io::Result<Option<Bytes>> {
    let want = queued(fd.get_ref()).unwrap_or(MIN_READ).clamp(1, limit);
    let mut buf: Vec<u8> = Vec::with_capacity(want);
    loop {
        // SAFETY: the kernel writes at most `want` bytes into the vector's spare capacity,
        // and only the bytes it reports written become part of the vector.
        let n = unsafe { libc::read(fd.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), want) };
        if n >= 0 {
            // SAFETY: `n` bytes were initialized by the read above.
            unsafe { buf.set_len(n as usize) };
            return Ok(Some(Bytes::from(buf)));
        }
        match Errno::last() {
            Errno::EAGAIN => return Ok(None),
            Errno::EIO => return Ok(Some(Bytes::new())),
            Errno::EINTR => continue,
            e => return Err(e.into()),
        }
    }
}

/// Reads the next chunk; an empty chunk means end of file.
pub async fn read_chunk(fd: &AsyncFd<OwnedFd>, limit: usize) -> io::Result<Bytes> {
    loop {
        let mut guard = fd.readable().await?;
        match try_read_chunk(fd, limit)? {
            Some(chunk) => return Ok(chunk),
            None => guard.clear_ready(),
        }
    }
}

/// Grows a pipe's kernel buffer (fewer, larger reads for chatty processes). Best effort:
/// the kernel may refuse past the per-user pipe budget.
pub fn grow_pipe(fd: &AsyncFd<OwnedFd>, size: usize) -> bool {
    nix::fcntl::fcntl(fd.get_ref(), FcntlArg::F_SETPIPE_SZ(size as libc::c_int)).is_ok()
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
