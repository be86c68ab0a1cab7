//! fibonacci (Zig): prints "fib(N) = F" for each N given as an argument, or,
//! when there are no arguments, for each whitespace-separated N read from stdin.
//!
//! N must be a decimal integer from 0 to 93: fib(93) is the largest Fibonacci
//! number that fits in 64 bits. Anything else stops the program with a one-line
//! error on stderr and exit code 1, exactly like the other fibonacci-* examples.
//! Written for the std.Io API of Zig 0.16 and later (PyPI ziglang).

const std = @import("std");

const max_n: u32 = 93;

fn parseN(token: []const u8) ?u32 {
    if (token.len == 0) return null;
    var n: u32 = 0;
    for (token) |c| {
        if (c < '0' or c > '9') return null;
        n = n * 10 + (c - '0');
        if (n > max_n) return null;
    }
    return n;
}

fn fib(n: u32) u64 {
    var a: u64 = 0;
    var b: u64 = 1;
    var i: u32 = 0;
    while (i < n) : (i += 1) {
        const next = a + b;
        a = b;
        b = next;
    }
    return a;
}

const Output = struct {
    out: *std.Io.Writer,
    err: *std.Io.Writer,

    /// Prints one answer; false after reporting a bad token.
    fn answer(self: Output, token: []const u8) !bool {
        const n = parseN(token) orelse {
            try self.out.flush(); // keep stdout and stderr in order on a terminal
            try self.err.print(
                "fibonacci: invalid input '{s}': expected an integer from 0 to {d}\n",
                .{ token, max_n },
            );
            try self.err.flush();
            return false;
        };
        try self.out.print("fib({d}) = {d}\n", .{ n, fib(n) });
        return true;
    }
};

fn run(init: std.process.Init) !bool {
    const io = init.io;
    var out_buf: [4096]u8 = undefined;
    var err_buf: [512]u8 = undefined;
    var stdout = std.Io.File.stdout().writerStreaming(io, &out_buf);
    var stderr = std.Io.File.stderr().writerStreaming(io, &err_buf);
    const output = Output{ .out = &stdout.interface, .err = &stderr.interface };
    defer output.out.flush() catch {};

    const args = try init.minimal.args.toSlice(init.arena.allocator());
    if (args.len > 1) {
        for (args[1..]) |arg| {
            if (!try output.answer(arg)) return false;
        }
        return true;
    }

    var in_buf: [4096]u8 = undefined;
    var stdin = std.Io.File.stdin().readerStreaming(io, &in_buf);
    const input = try stdin.interface.allocRemaining(init.gpa, .unlimited);
    defer init.gpa.free(input);
    var tokens = std.mem.tokenizeAny(u8, input, " \t\n\r\x0b\x0c");
    while (tokens.next()) |token| {
        if (!try output.answer(token)) return false;
    }
    return true;
}

pub fn main(init: std.process.Init) u8 {
    const ok = run(init) catch |err| {
        std.debug.print("fibonacci: {s}\n", .{@errorName(err)});
        return 1;
    };
    return if (ok) 0 else 1;
}
