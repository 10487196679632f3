//! The traffic: small UDP datagrams sent with `sendmmsg(2)` from inside a
//! network namespace, as fast as one thread can, bounded by time and count.

use std::{
    io,
    net::{SocketAddrV4, UdpSocket},
    os::fd::AsRawFd as _,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use testkit::netns;

/// Datagrams per `sendmmsg` call.
const BATCH: usize = 64;
/// Payload bytes per datagram: small, so that the packet rate is what is measured.
const PAYLOAD: usize = 16;

/// An unconnected UDP socket in the sending namespace. Unconnected, so the
/// ICMP port-unreachable replies are ignored instead of failing the next send.
pub struct Sender {
    socket: UdpSocket,
    dst: libc::sockaddr_in,
}

/// What one flood sent.
pub struct Sent {
    pub datagrams: u64,
    pub elapsed: Duration,
}

impl Sender {
    /// Binds `src` inside the namespace at `netns` (a `/run/netns` path).
    pub fn new(netns: &Path, src: SocketAddrV4, dst: SocketAddrV4) -> anyhow::Result<Self> {
        let socket = netns::run_in(netns, move || UdpSocket::bind(src))
            .with_context(|| format!("binding a UDP socket to {src} in {}", netns.display()))?;
        Ok(Self { socket, dst: sockaddr_in(dst) })
    }

    /// Sends until `duration` has passed or `max_datagrams` are sent.
    pub fn flood(&self, duration: Duration, max_datagrams: u64) -> anyhow::Result<Sent> {
        let payload = [0x5a_u8; PAYLOAD];
        let mut dst = self.dst;
        let mut iov = libc::iovec { iov_base: payload.as_ptr() as *mut libc::c_void, iov_len: PAYLOAD };
        // SAFETY: mmsghdr is plain data; all-zero is a valid empty header.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for m in &mut msgs {
            m.msg_hdr.msg_name = (&raw mut dst).cast();
            m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            m.msg_hdr.msg_iov = &raw mut iov;
            m.msg_hdr.msg_iovlen = 1;
        }
        let started = Instant::now();
        let mut datagrams = 0_u64;
        while datagrams < max_datagrams && started.elapsed() < duration {
            // SAFETY: every header points at `dst`, `iov` and `payload`, which
            // outlive the call; the kernel only reads them (and writes msg_len).
            let n = unsafe { libc::sendmmsg(self.socket.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
            if n < 0 {
                let err = io::Error::last_os_error();
                // A full transmit queue is back-pressure, not a failure.
                if matches!(err.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN | libc::EINTR)) {
                    continue;
                }
                return Err(err).context("sendmmsg");
            }
            datagrams += n as u64;
        }
        Ok(Sent { datagrams, elapsed: started.elapsed() })
    }
}

fn sockaddr_in(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*addr.ip()).to_be() },
        sin_zero: [0; 8],
    }
}
