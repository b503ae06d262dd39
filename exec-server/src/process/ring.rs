//! The per-process retention ring: the newest output chunks, bounded in bytes and count,
//! with a record of what was evicted so that `process/read` can report the loss.

use std::collections::VecDeque;

use bytes::Bytes;
use exec_protocol::process::OutputStream;

#[derive(Debug, Clone)]
pub struct Chunk {
    pub seq: u64,
    pub stream: OutputStream,
    pub data: Bytes,
}

#[derive(Debug)]
pub struct OutputRing {
    chunks: VecDeque<Chunk>,
    bytes: usize,
    max_bytes: usize,
    max_chunks: usize,
    /// Highest seq evicted so far (0 = nothing evicted).
    evicted_through: u64,
}

/// What one read of the ring returned.
#[derive(Debug)]
pub struct RingRead {
    pub chunks: Vec<Chunk>,
    /// More chunks after `after_seq` exist than were returned (byte budget).
    pub truncated: bool,
    /// Set when chunks after `after_seq` were evicted: the oldest seq still retained.
    pub dropped_before_seq: Option<u64>,
}

impl OutputRing {
    pub fn new(max_bytes: usize, max_chunks: usize) -> Self {
        Self {
            chunks: VecDeque::new(),
            bytes: 0,
            max_bytes,
            max_chunks: max_chunks.max(1),
            evicted_through: 0,
        }
    }

    /// Appends a chunk (seqs must increase), evicting the oldest beyond the bounds. The
    /// newest chunk is always kept, even when it alone exceeds the byte bound.
    pub fn push(&mut self, chunk: Chunk) {
        self.bytes += chunk.data.len();
        self.chunks.push_back(chunk);
        while self.chunks.len() > 1 && (self.bytes > self.max_bytes || self.chunks.len() > self.max_chunks) {
            if let Some(old) = self.chunks.pop_front() {
                self.bytes -= old.data.len();
                self.evicted_through = old.seq;
            }
        }
    }

    /// Chunks with `seq > after_seq`, within `max_bytes` (at least one chunk is returned
    /// when any is available).
    pub fn read(&self, after_seq: u64, max_bytes: Option<usize>, next_seq: u64) -> RingRead {
        let start = self.chunks.partition_point(|c| c.seq <= after_seq);
        let dropped_before_seq =
            (self.evicted_through > after_seq).then(|| self.chunks.get(start).map_or(next_seq, |c| c.seq));
        let mut chunks = Vec::new();
        let mut used = 0usize;
        let mut truncated = false;
        for c in self.chunks.range(start..) {
            if let Some(budget) = max_bytes
                && !chunks.is_empty()
                && used + c.data.len() > budget
            {
                truncated = true;
                break;
            }
            used += c.data.len();
            chunks.push(c.clone());
        }
        RingRead {
            chunks,
            truncated,
            dropped_before_seq,
        }
    }

    pub fn has_after(&self, after_seq: u64) -> bool {
        self.chunks.back().is_some_and(|c| c.seq > after_seq)
    }

    /// The last `max` bytes retained, oldest first.
    pub fn tail(&self, max: usize) -> Vec<u8> {
        let mut parts = Vec::new();
        let mut left = max;
        for c in self.chunks.iter().rev() {
            if left == 0 {
                break;
            }
            let take = c.data.len().min(left);
            parts.push(&c.data[c.data.len() - take..]);
            left -= take;
        }
        parts.iter().rev().flat_map(|p| p.iter().copied()).collect()
    }

    pub fn retained_bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(seq: u64, n: usize) -> Chunk {
        Chunk {
            seq,
            stream: OutputStream::Stdout,
            data: Bytes::from(vec![b'x'; n]),
        }
    }

    #[test]
    fn evicts_oldest_and_reports_loss() {
        let mut r = OutputRing::new(10, 100);
        for seq in 1..=5 {
            r.push(chunk(seq, 4));
        }
        assert_eq!(r.retained_bytes(), 8);
        let read = r.read(0, None, 6);
        assert_eq!(read.chunks.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(read.dropped_before_seq, Some(4));
        let read = r.read(4, None, 6);
        assert_eq!(read.dropped_before_seq, None);
        assert_eq!(read.chunks.len(), 1);
    }

    #[test]
    fn byte_budget_returns_at_least_one_chunk() {
        let mut r = OutputRing::new(100, 100);
        for seq in 1..=3 {
            r.push(chunk(seq, 4));
        }
        let read = r.read(0, Some(0), 4);
        assert_eq!(read.chunks.len(), 1);
        assert!(read.truncated);
        let read = r.read(0, Some(8), 4);
        assert_eq!(read.chunks.len(), 2);
        let read = r.read(0, Some(100), 4);
        assert!(!read.truncated);
        assert_eq!(read.chunks.len(), 3);
    }

    #[test]
    fn keeps_an_oversized_newest_chunk_and_caps_count() {
        let mut r = OutputRing::new(4, 2);
        r.push(chunk(1, 10));
        assert_eq!(r.read(0, None, 2).chunks.len(), 1);
        let mut r = OutputRing::new(1000, 2);
        for seq in 1..=3 {
            r.push(chunk(seq, 1));
        }
        assert_eq!(r.read(0, None, 4).chunks.len(), 2);
    }
}
