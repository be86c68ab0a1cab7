//! A poll-based TCP echo server for WASI preview1, in Rust with std only.
//!
//! It serves the listening socket it is given: fd 3, or the fd named LISTEN in
//! $FD_NAMES (Enarx's convention for the [[files]] of Donjon.toml). std has no
//! poll() on wasm32-wasi, so this declares `poll_oneoff` itself; reads and writes
//! go through std's TcpStream, which uses fd_read/fd_write. The listener stays
//! blocking and is accepted from only when poll says a connection is waiting.
//!
//! Usage: main.wasm [MAX_CONNECTIONS]   (exit 0 after that many have closed; 0 = forever)

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::wasi::io::{AsRawFd, FromRawFd};

const EVENTTYPE_FD_READ: u8 = 1;
const SUBSCRIPTION_SIZE: usize = 48;
const EVENT_SIZE: usize = 32;

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn poll_oneoff(subs: *const u8, events: *mut u8, nsubs: u32, nevents: *mut u32) -> u16;
}

/// Wait until some of `fds` can be read; returns the indexes that are ready.
fn wait_readable(fds: &[u32]) -> Result<Vec<usize>, u16> {
    let mut subs = vec![0u8; SUBSCRIPTION_SIZE * fds.len()];
    for (i, fd) in fds.iter().enumerate() {
        let s = &mut subs[i * SUBSCRIPTION_SIZE..(i + 1) * SUBSCRIPTION_SIZE];
        s[0..8].copy_from_slice(&(i as u64).to_le_bytes()); // userdata
        s[8] = EVENTTYPE_FD_READ; // tag
        s[16..20].copy_from_slice(&fd.to_le_bytes()); // subscription_fd_readwrite.file_descriptor
    }
    let mut events = vec![0u8; EVENT_SIZE * fds.len()];
    let mut n: u32 = 0;
    let errno =
        unsafe { poll_oneoff(subs.as_ptr(), events.as_mut_ptr(), fds.len() as u32, &mut n) };
    if errno != 0 {
        return Err(errno);
    }
    let mut ready = Vec::new();
    for e in events.chunks(EVENT_SIZE).take(n as usize) {
        let mut userdata = [0u8; 8];
        userdata.copy_from_slice(&e[0..8]);
        ready.push(u64::from_le_bytes(userdata) as usize);
    }
    Ok(ready)
}

fn listener_fd() -> u32 {
    match std::env::var("FD_NAMES") {
        Ok(names) => names.split(':').position(|n| n == "LISTEN").map(|p| p as u32).unwrap_or(3),
        Err(_) => 3,
    }
}

fn main() {
    let max_conns: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(0);
    let listener = unsafe { TcpListener::from_raw_fd(listener_fd() as i32) };
    eprintln!("echo-rust: serving fd {}", listener.as_raw_fd());
    let mut clients: Vec<TcpStream> = Vec::new();
    let (mut accepted, mut closed, mut bytes) = (0u64, 0u64, 0u64);
    let mut buf = vec![0u8; 65536];
    while max_conns == 0 || closed < max_conns {
        let mut fds = vec![listener.as_raw_fd() as u32];
        fds.extend(clients.iter().map(|c| c.as_raw_fd() as u32));
        let ready = match wait_readable(&fds) {
            Ok(ready) => ready,
            Err(errno) => {
                eprintln!("echo-rust: poll_oneoff failed with errno {}", errno);
                std::process::exit(1);
            }
        };
        let mut gone = Vec::new();
        for &i in &ready {
            if i == 0 {
                match listener.accept() {
                    Ok((stream, _)) => {
                        accepted += 1;
                        clients.push(stream);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => eprintln!("echo-rust: accept: {}", e),
                }
                continue;
            }
            let client = &mut clients[i - 1];
            let keep = match client.read(&mut buf) {
                Ok(0) => false,
                Ok(n) => {
                    bytes += n as u64;
                    client.write_all(&buf[..n]).is_ok()
                }
                Err(e) => e.kind() == ErrorKind::Interrupted || e.kind() == ErrorKind::WouldBlock,
            };
            if !keep {
                gone.push(i - 1);
            }
        }
        gone.sort_unstable();
        for i in gone.into_iter().rev() {
            clients.swap_remove(i); // dropping the stream closes it
            closed += 1;
        }
    }
    println!("echo-rust: {} connections, {} bytes", accepted, bytes);
}
