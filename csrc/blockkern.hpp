// Compiles the block kernels twice, portable and AVX2+FMA, and picks one at run
// time, so a portable wheel still runs the vector units of the machine it lands on.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "blockplan.hpp"

namespace ecgk {
#define ECGK_VBYTES 32
namespace portable {
#include "blockkern_body.hpp"
}
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#include "blockkern_body.hpp"
}
#pragma GCC pop_options
#undef ECGK_VBYTES
#define ECGK_VBYTES 64
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx2,fma")
namespace avx512 {
#include "blockkern_body.hpp"
}
#pragma GCC pop_options
inline int simd_level() {
    // ECGCORE_SIMD=0|1|2 caps the level (read once): tests run the portable and
    // AVX2 kernels on an AVX-512 machine this way
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
inline bool has_avx2() { return simd_level() >= 1; }
#define ECGK_DISPATCH(fn, ...)                                                  \
    (::ecgk::simd_level() == 2 ? ::ecgk::avx512::fn(__VA_ARGS__)                \
     : ::ecgk::simd_level() == 1 ? ::ecgk::avx2::fn(__VA_ARGS__) : ::ecgk::portable::fn(__VA_ARGS__))
#else
#define ECGK_DISPATCH(fn, ...) (::ecgk::portable::fn(__VA_ARGS__))
#endif
}  // namespace ecgk
