//! What Rust's std does on top of preview1: args, env, files, directories, time, stdin.
//! Run as `std_fs.wasm one two` with `--env RUST_TEST=yes` and "stdin text\n" on stdin.
//! Prints one line per check, "FAIL ..." on a mismatch, and exits 3 when all is well
//! (so a runtime that loses the exit code is caught).

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Checks {
    failures: u32,
}

impl Checks {
    fn eq<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, got: T, want: T) {
        if got == want {
            println!("ok {} = {:?}", what, got);
        } else {
            println!("FAIL {}: got {:?} want {:?}", what, got, want);
            self.failures += 1;
        }
    }
}

fn main() {
    let mut c = Checks { failures: 0 };
    let args: Vec<String> = std::env::args().skip(1).collect();
    c.eq("args", args, vec!["one".to_string(), "two".to_string()]);
    let env: HashMap<String, String> = std::env::vars().collect();
    c.eq("env count", env.len(), 1);
    c.eq("RUST_TEST", env.get("RUST_TEST").cloned(), Some("yes".to_string()));

    fs::create_dir_all("/work/a/b").expect("create_dir_all");
    fs::write("/work/a/b/data.bin", b"0123456789").expect("write");
    c.eq("read back", fs::read("/work/a/b/data.bin").expect("read"), b"0123456789".to_vec());
    c.eq("metadata len", fs::metadata("/work/a/b/data.bin").map(|m| m.len()).ok(), Some(10));
    c.eq("is_dir", fs::metadata("/work/a").map(|m| m.is_dir()).ok(), Some(true));

    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/work/a/b/data.bin")
        .expect("open rw");
    f.seek(SeekFrom::Start(4)).expect("seek");
    f.write_all(b"XY").expect("write at 4");
    f.seek(SeekFrom::End(-3)).expect("seek end");
    let mut tail = String::new();
    f.read_to_string(&mut tail).expect("read tail");
    c.eq("tail", tail.as_str(), "789");
    f.set_len(6).expect("set_len");
    drop(f);
    c.eq("after set_len", fs::read_to_string("/work/a/b/data.bin").ok(), Some("0123XY".into()));

    let mut f = fs::OpenOptions::new().append(true).open("/work/a/b/data.bin").expect("append");
    f.write_all(b"++").expect("append write");
    drop(f);
    c.eq("after append", fs::read_to_string("/work/a/b/data.bin").ok(), Some("0123XY++".into()));

    for i in 0..5 {
        fs::write(format!("/work/a/f{}.txt", i), format!("{}", i)).expect("write many");
    }
    let mut names: Vec<String> = fs::read_dir("/work/a")
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf8"))
        .collect();
    names.sort();
    c.eq("read_dir", names, vec!["b", "f0.txt", "f1.txt", "f2.txt", "f3.txt", "f4.txt"]
        .into_iter().map(String::from).collect::<Vec<_>>());

    fs::rename("/work/a/f0.txt", "/work/renamed.txt").expect("rename");
    c.eq("renamed", fs::read_to_string("/work/renamed.txt").ok(), Some("0".into()));
    fs::remove_file("/work/renamed.txt").expect("remove_file");
    c.eq("removed", fs::metadata("/work/renamed.txt").is_err(), true);
    c.eq("remove non-empty dir fails", fs::remove_dir("/work/a").is_err(), true);
    // Rust 1.63's remove_dir_all deletes while it iterates, which preview1 readdir cookies
    // do not survive under wasmtime either: remove by hand.
    fs::remove_file("/work/a/b/data.bin").expect("remove data.bin");
    fs::remove_dir("/work/a/b").expect("remove_dir b");
    for i in 1..5 {
        fs::remove_file(format!("/work/a/f{}.txt", i)).expect("remove f");
    }
    fs::remove_dir("/work/a").expect("remove_dir a");
    c.eq("all removed", fs::metadata("/work/a").is_err(), true);

    let hello = fs::read_to_string("/hello.txt").ok();
    c.eq("fixture hello.txt", hello, Some("hello world\n".into()));
    c.eq("symlink followed", fs::read_to_string("/link_in").ok(), Some("hello world\n".into()));
    c.eq("escape refused", fs::read_to_string("/link_up_out").is_err(), true);
    c.eq("dotdot refused", fs::read_to_string("/../outside/secret.txt").is_err(), true);
    let err = fs::read("/missing").err().map(|e| e.kind());
    c.eq("missing is NotFound", err, Some(std::io::ErrorKind::NotFound));

    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("after epoch");
    c.eq("realtime after 2020", now > Duration::from_secs(1_577_836_800), true);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(15));
    c.eq("sleep 15 ms", t0.elapsed() >= Duration::from_millis(15), true);

    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).expect("stdin");
    c.eq("stdin", input.as_str(), "stdin text\n");
    // HashMap's RandomState draws from random_get: two maps should order keys differently
    // only by chance, so just make sure it works.
    let m: HashMap<u32, u32> = (0..100).map(|i| (i, i * 2)).collect();
    c.eq("hashmap", m.get(&42).copied(), Some(84));

    eprintln!("to stderr");
    println!("failures {}", c.failures);
    std::process::exit(if c.failures == 0 { 3 } else { 1 });
}
