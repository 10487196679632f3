//! `udpsend DST PORT [COUNT] [PAYLOAD]`: sends COUNT (default 1) UDP
//! datagrams to DST:PORT. The test VM's busybox `nc` cannot send UDP, so the
//! VM scenarios use this; it is copied into the VM with its libraries.

use std::{net::UdpSocket, process::ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(dst), Some(port)) = (args.first(), args.get(1).and_then(|p| p.parse::<u16>().ok())) else {
        eprintln!("usage: udpsend DST PORT [COUNT] [PAYLOAD]");
        return ExitCode::from(2);
    };
    let count: u32 = args.get(2).and_then(|c| c.parse().ok()).unwrap_or(1);
    let payload = args.get(3).map_or("skbtrace", String::as_str);
    let bind = if dst.contains(':') { "[::]:0" } else { "0.0.0.0:0" };
    let sock = match UdpSocket::bind(bind) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("udpsend: bind {bind}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = if dst.contains(':') { format!("[{dst}]:{port}") } else { format!("{dst}:{port}") };
    for _ in 0..count {
        if let Err(e) = sock.send_to(payload.as_bytes(), &addr) {
            eprintln!("udpsend: send to {addr}: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
