// fibonacci (C++): prints "fib(N) = F" for each N given as an argument, or, when
// there are no arguments, for each whitespace-separated N read from stdin.
//
// N must be a decimal integer from 0 to 93: fib(93) is the largest Fibonacci
// number that fits in 64 bits. Anything else stops the program with a one-line
// error on stderr and exit code 1, exactly like the other fibonacci-* examples.
#include <cstdint>
#include <iostream>
#include <optional>
#include <string>

namespace {

constexpr int kMaxN = 93;

std::optional<int> parse_n(const std::string& token) {
    if (token.empty()) {
        return std::nullopt;
    }
    int n = 0;
    for (char c : token) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        n = n * 10 + (c - '0');
        if (n > kMaxN) {
            return std::nullopt;
        }
    }
    return n;
}

std::uint64_t fib(int n) {
    std::uint64_t a = 0;
    std::uint64_t b = 1;
    for (int i = 0; i < n; ++i) {
        const std::uint64_t next = a + b;
        a = b;
        b = next;
    }
    return a;
}

// Prints one answer; false after reporting a bad token.
bool answer(const std::string& token) {
    const std::optional<int> n = parse_n(token);
    if (!n) {
        std::cerr << "fibonacci: invalid input '" << token
                  << "': expected an integer from 0 to " << kMaxN << '\n';
        return false;
    }
    std::cout << "fib(" << *n << ") = " << fib(*n) << '\n';
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    bool ok = true;
    if (argc <= 1) {
        std::string token;
        while (ok && std::cin >> token) {  // operator>> splits on any whitespace
            ok = answer(token);
        }
        if (ok && std::cin.bad()) {
            std::cerr << "fibonacci: cannot read stdin\n";
            ok = false;
        }
    } else {
        for (int i = 1; i < argc && ok; ++i) {
            ok = answer(argv[i]);
        }
    }
    std::cout.flush();
    return ok && std::cout.good() ? 0 : 1;
}
