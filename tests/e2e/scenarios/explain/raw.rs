//! Packets the socket API does not send, through a raw IPv4 socket (the
//! kernel adds the IP header): an ICMP echo request, and a TCP segment that
//! belongs to no connection. The VM has no tool that sends either.

use std::{
    io,
    mem::size_of,
    net::Ipv4Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

pub const FIN: u8 = 0x01;
pub const ACK: u8 = 0x10;

/// The Internet checksum (RFC 1071) of `parts` laid end to end.
fn checksum(parts: &[&[u8]]) -> u16 {
    let bytes = parts.concat();
    let mut sum: u32 = bytes.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]))).sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP echo request with identifier `id`.
pub fn icmp_echo(id: u16) -> Vec<u8> {
    let mut m = vec![8, 0, 0, 0];
    m.extend(id.to_be_bytes());
    m.extend(1u16.to_be_bytes());
    m.extend(b"skbtrace");
    let sum = checksum(&[&m]);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    m
}

/// A 20-byte TCP header with `flags`, no payload, its checksum over the
/// IPv4 pseudo-header.
pub fn tcp_segment(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: u8) -> Vec<u8> {
    let mut h = Vec::with_capacity(20);
    h.extend(src.1.to_be_bytes());
    h.extend(dst.1.to_be_bytes());
    h.extend(1000u32.to_be_bytes()); // sequence number
    h.extend(1u32.to_be_bytes()); // acknowledgment number
    h.extend([5 << 4, flags]); // header length in words, flags
    h.extend(65535u16.to_be_bytes()); // window
    h.extend([0; 4]); // checksum, urgent pointer
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend(src.0.octets());
    pseudo.extend(dst.0.octets());
    pseudo.extend([0, libc::IPPROTO_TCP as u8]);
    pseudo.extend((h.len() as u16).to_be_bytes());
    let sum = checksum(&[&pseudo, &h]);
    h[16..18].copy_from_slice(&sum.to_be_bytes());
    h
}

fn sockaddr(ip: Ipv4Addr) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(ip.octets()) },
        sin_zero: [0; 8],
    }
}

/// Sends `payload` of IP protocol `proto` from `src` to `dst` (call it
/// inside the sender's netns).
pub fn send(proto: libc::c_int, src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> io::Result<()> {
    let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: socket(2) has no preconditions; the descriptor it returns is
    // owned by `fd` from here on.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let from = sockaddr(src);
    // SAFETY: `from` is a valid sockaddr_in of `len` bytes.
    if unsafe { libc::bind(fd.as_raw_fd(), (&raw const from).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let to = sockaddr(dst);
    // SAFETY: `payload` and `to` are valid for the lengths given.
    let sent =
        unsafe { libc::sendto(fd.as_raw_fd(), payload.as_ptr().cast(), payload.len(), 0, (&raw const to).cast(), len) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
