//! fibonacci (Rust): prints "fib(N) = F" for each N given as an argument, or,
//! when there are no arguments, for each whitespace-separated N read from stdin.
//!
//! N must be a decimal integer from 0 to 93: fib(93) is the largest Fibonacci
//! number that fits in 64 bits. Anything else stops the program with a one-line
//! error on stderr and exit code 1, exactly like the other fibonacci-* examples.
//! Builds with a plain `rustc` (no Cargo, no crates), down to Rust 1.63.

use std::io::{self, Read, Write};
use std::process::ExitCode;

const MAX_N: u32 = 93;

fn parse_n(token: &str) -> Option<u32> {
    if token.is_empty() {
        return None;
    }
    let mut n: u32 = 0;
    for c in token.bytes() {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(c - b'0');
        if n > MAX_N {
            return None;
        }
    }
    Some(n)
}

fn fib(n: u32) -> u64 {
    let (mut a, mut b) = (0u64, 1u64);
    for _ in 0..n {
        let next = a + b;
        a = b;
        b = next;
    }
    a
}

/// Prints one answer; false after reporting a bad token.
fn answer(out: &mut impl Write, token: &str) -> io::Result<bool> {
    match parse_n(token) {
        Some(n) => {
            writeln!(out, "fib({}) = {}", n, fib(n))?;
            Ok(true)
        }
        None => {
            out.flush()?; // keep stdout and stderr in order on a terminal
            eprintln!("fibonacci: invalid input '{}': expected an integer from 0 to {}", token, MAX_N);
            Ok(false)
        }
    }
}

fn run() -> io::Result<bool> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let args: Vec<String> =
        std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    let mut ok = true;
    if args.is_empty() {
        let mut input = Vec::new();
        io::stdin().read_to_end(&mut input)?;
        // Tokens are split on ASCII whitespace, as C's isspace does; bytes that
        // are not UTF-8 are shown replaced, but they are rejected all the same.
        for token in input.split(|c| c.is_ascii_whitespace() || *c == 0x0b) {
            if !token.is_empty() && ok {
                ok = answer(&mut out, &String::from_utf8_lossy(token))?;
            }
        }
    } else {
        for token in &args {
            if !answer(&mut out, token)? {
                ok = false;
                break;
            }
        }
    }
    out.flush()?;
    Ok(ok)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("fibonacci: {}", err);
            ExitCode::FAILURE
        }
    }
}
