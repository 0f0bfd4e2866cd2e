/* Architecture-neutral stand-in for <asm/types.h>, so that <linux/bpf.h>
 * compiles for the BPF target without the host's multiarch include path
 * (/usr/include/<triplet>), which differs per build machine. */
#include <asm-generic/types.h>
