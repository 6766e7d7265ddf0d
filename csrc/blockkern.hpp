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
#include "simd_level.hpp"

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
inline bool has_avx2() { return simd_level() >= 1; }
#define ECGK_DISPATCH(fn, ...)                                                  \
    (::ecgk::simd_level() == 2 ? ::ecgk::avx512::fn(__VA_ARGS__)                \
     : ::ecgk::simd_level() == 1 ? ::ecgk::avx2::fn(__VA_ARGS__) : ::ecgk::portable::fn(__VA_ARGS__))
#else
#define ECGK_DISPATCH(fn, ...) (::ecgk::portable::fn(__VA_ARGS__))
#endif
}  // namespace ecgk
