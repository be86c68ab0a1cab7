// fibonacci (AssemblyScript): prints "fib(N) = F" for each N given as an
// argument, or, when there are no arguments, for each whitespace-separated N
// read from stdin.
//
// N must be a decimal integer from 0 to 93: fib(93) is the largest Fibonacci
// number that fits in 64 bits. Anything else stops the program with a one-line
// error on stderr and exit code 1, exactly like the other fibonacci-* examples.
// Compiled with @assemblyscript/wasi-shim, which provides `process` over WASI.

const MAX_N: i32 = 93;

/** The value of a token of decimal digits no greater than MAX_N, or -1. */
function parseN(token: string): i32 {
  if (token.length == 0) return -1;
  let n: i32 = 0;
  for (let i = 0; i < token.length; i++) {
    const c = token.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return -1;
    n = n * 10 + (c - 0x30);
    if (n > MAX_N) return -1;
  }
  return n;
}

function fib(n: i32): u64 {
  let a: u64 = 0;
  let b: u64 = 1;
  for (let i = 0; i < n; i++) {
    const next = a + b;
    a = b;
    b = next;
  }
  return a;
}

/** Prints one answer; false after reporting a bad token. */
function answer(token: string): bool {
  const n = parseN(token);
  if (n < 0) {
    process.stderr.write(
      "fibonacci: invalid input '" + token + "': expected an integer from 0 to " +
        MAX_N.toString() + "\n",
    );
    return false;
  }
  process.stdout.write("fib(" + n.toString() + ") = " + fib(n).toString() + "\n");
  return true;
}

function isSpace(c: u8): bool {
  return c == 0x20 || (c >= 0x09 && c <= 0x0d); // space, \t \n \v \f \r
}

/** All of stdin, read until end of file. */
function readStdin(): Uint8Array {
  let data = new Uint8Array(4096);
  let length = 0;
  const chunk = new ArrayBuffer(4096);
  for (;;) {
    const got = process.stdin.read(chunk);
    if (got <= 0) break;
    if (length + got > data.length) {
      const bigger = new Uint8Array(max(data.length * 2, length + got));
      bigger.set(data.subarray(0, length));
      data = bigger;
    }
    data.set(Uint8Array.wrap(chunk, 0, got), length);
    length += got;
  }
  return data.subarray(0, length);
}

function main(): i32 {
  const argv = process.argv;
  if (argv.length > 1) {
    for (let i = 1; i < argv.length; i++) {
      if (!answer(argv[i])) return 1;
    }
    return 0;
  }
  const input = readStdin();
  let start = 0;
  while (start < input.length) {
    while (start < input.length && isSpace(input[start])) start++;
    let end = start;
    while (end < input.length && !isSpace(input[end])) end++;
    if (end > start) {
      const token = String.UTF8.decode(input.slice(start, end).buffer);
      if (!answer(token)) return 1;
    }
    start = end;
  }
  return 0;
}

process.exit(main());
