/* The smallest useful command: process-start benchmark. */
#include <stdio.h>

int main(void) {
    puts("hello");
    return 0;
}
