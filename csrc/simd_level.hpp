// The vector-instruction level every kernel module dispatches on, read once:
// 2 = AVX-512 (F, VL, DQ), 1 = AVX2 + FMA, 0 = portable code.
// ECGCORE_SIMD=0|1|2 caps it, so tests run the portable and AVX2 kernels of a
// portable wheel on an AVX-512 machine (a subprocess per level: the value is
// read when a kernel first asks).
#pragma once
#include <cstdlib>

namespace ecgk {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
inline int simd_level() {
    static const int lvl = [] {
        int l = (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                 __builtin_cpu_supports("avx512dq")) ? 2
                : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 1 : 0;
        const char* e = std::getenv("ECGCORE_SIMD");
        if (e && e[0] >= '0' && e[0] <= '2' && e[1] == 0 && e[0] - '0' < l) l = e[0] - '0';
        return l;
    }();
    return lvl;
}
#else
inline int simd_level() { return 0; }
#endif
}  // namespace ecgk
