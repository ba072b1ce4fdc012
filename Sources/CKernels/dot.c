// Packed-weight integer matrix kernels (see include/CKernels.h).

#include "CKernels.h"

#include <string.h>

/// Repacks rows of blocks that start with `halves` f16 numbers and go on with `payload` bytes: per group of 8 rows
/// and block, each f16 number of the 8 rows side by side, then the payload as 32-byte vectors whose lane `j` holds
/// 4 bytes of row `j`.
static void pack(const uint8_t *src, uint8_t *dst, long rows, long blocks, long halves, long payload) {
    const long block_bytes = 2 * halves + payload;
    const long group_block_bytes = 8 * block_bytes;
    for (long g = 0; g < rows / 8; g++) {
        for (long b = 0; b < blocks; b++) {
            uint8_t *o = dst + (g * blocks + b) * group_block_bytes;
            for (long j = 0; j < 8; j++) {
                const uint8_t *block = src + ((g * 8 + j) * blocks + b) * block_bytes;
                for (long h = 0; h < halves; h++) memcpy(o + 16 * h + 2 * j, block + 2 * h, 2);
                for (long k = 0; k < payload / 4; k++) {
                    memcpy(o + 16 * halves + 32 * k + 4 * j, block + 2 * halves + 4 * k, 4);
                }
            }
        }
    }
}

void mope_q4_1_pack(const uint8_t *src, uint8_t *dst, long rows, long blocks) { pack(src, dst, rows, blocks, 2, 16); }

void mope_q8_0_pack(const uint8_t *src, uint8_t *dst, long rows, long blocks) { pack(src, dst, rows, blocks, 1, 32); }

#if defined(__x86_64__) && !defined(MOPE_PORTABLE)

#include <immintrin.h>

// No software prefetch: the packed weights stream in order through huge pages, which the hardware prefetchers
// follow. Prefetching 8 group-blocks ahead made a 1-row pass of all matmuls slower (4.46–4.92 ms against 3.67–4.41
// without, 2 threads, alternating runs of BENCH_MODEL=1 Scripts/bench-kernels.sh) and a 16-row pass 2–7 % faster.

#define TARGET __attribute__((target("avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline)) TARGET

int mope_kernels_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

/// 4 activation bytes at `p` in every 32-bit lane.
INLINE __m256i broadcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/// One block of a group of 8 Q4_1 weight rows against `n` activation rows: adds the block's terms to `acc` and `off`.
INLINE void q4_1_block(const uint8_t *p, long b, long blocks, const int8_t *x, const float *dx, const float *sx, long n,
                       __m256 *acc, __m256 *off) {
    const long columns = 32 * blocks;
    const __m256i mask = _mm256_set1_epi8(0x0F);
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    const __m256 m = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 16)));
    // Σ over the block per row, as 16-bit pairs: each vpmaddubsw pair is at most 2·15·127, eight of them fit.
    __m256i s[4];
    for (long t = 0; t < n; t++) s[t] = _mm256_setzero_si256();
    for (long k = 0; k < 4; k++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(p + 32 + 32 * k));
        const __m256i lo = _mm256_and_si256(v, mask);                          // values 4k…4k+3
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);    // values 16+4k…
        for (long t = 0; t < n; t++) {
            const int8_t *xb = x + t * columns + 32 * b;
            s[t] = _mm256_add_epi16(s[t], _mm256_maddubs_epi16(lo, broadcast4(xb + 4 * k)));
            s[t] = _mm256_add_epi16(s[t], _mm256_maddubs_epi16(hi, broadcast4(xb + 16 + 4 * k)));
        }
    }
    for (long t = 0; t < n; t++) {
        const __m256 dot = _mm256_cvtepi32_ps(_mm256_madd_epi16(s[t], ones));  // exact integers
        acc[t] = _mm256_fmadd_ps(d, _mm256_mul_ps(_mm256_set1_ps(dx[t * blocks + b]), dot), acc[t]);
        off[t] = _mm256_fmadd_ps(m, _mm256_set1_ps(sx[t * blocks + b]), off[t]);
    }
}

/// One group of 8 Q4_1 weight rows against `n` (1…4, a constant after inlining) activation rows.
///
/// The float arithmetic is that of the Swift kernels (`Kernels.quantizedRows`), lane by lane: even and odd blocks
/// in separate sums, `acc += d·(dx·Σ)`, `off += m·sx`, result `(acc_even + acc_odd) + (off_even + off_odd)`. The
/// integer sums being exact, the results are the Swift kernels' bits, and a cluster of packed and portable workers
/// computes the same tokens.
INLINE void q4_1_group(const uint8_t *p, long blocks, const int8_t *x, const float *dx, const float *sx, long n,
                       float *out, long out_stride) {
    __m256 acc0[4], acc1[4], off0[4], off1[4];
    for (long t = 0; t < n; t++) {
        acc0[t] = acc1[t] = off0[t] = off1[t] = _mm256_setzero_ps();
    }
    long b = 0;
    for (; b + 2 <= blocks; b += 2, p += 2 * MOPE_Q4_1_GROUP_BLOCK_BYTES) {
        q4_1_block(p, b, blocks, x, dx, sx, n, acc0, off0);
        q4_1_block(p + MOPE_Q4_1_GROUP_BLOCK_BYTES, b + 1, blocks, x, dx, sx, n, acc1, off1);
    }
    if (b < blocks) q4_1_block(p, b, blocks, x, dx, sx, n, acc0, off0);
    for (long t = 0; t < n; t++) {
        const __m256 sums = _mm256_add_ps(acc0[t], acc1[t]);
        const __m256 offsets = _mm256_add_ps(off0[t], off1[t]);
        _mm256_storeu_ps(out + t * out_stride, _mm256_add_ps(sums, offsets));
    }
}

/// One block of a group of 8 Q8_0 weight rows against `n` activation rows.
INLINE void q8_0_block(const uint8_t *p, long b, long blocks, const int8_t *x, const float *dx, long n, __m256 *acc) {
    const long columns = 32 * blocks;
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    __m256i s[4];
    for (long t = 0; t < n; t++) s[t] = _mm256_setzero_si256();
    for (long k = 0; k < 8; k++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(p + 16 + 32 * k));
        // vpmaddubsw multiplies unsigned by signed bytes: |w| times x with w's sign (a pair is at most
        // 2·128·127, so it cannot saturate; −128 is 128 unsigned).
        const __m256i magnitude = _mm256_abs_epi8(v);
        for (long t = 0; t < n; t++) {
            const __m256i xs = _mm256_sign_epi8(broadcast4(x + t * columns + 32 * b + 4 * k), v);
            s[t] = _mm256_add_epi32(s[t], _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, xs), ones));
        }
    }
    for (long t = 0; t < n; t++) {
        const __m256 dot = _mm256_cvtepi32_ps(s[t]);
        acc[t] = _mm256_fmadd_ps(d, _mm256_mul_ps(_mm256_set1_ps(dx[t * blocks + b]), dot), acc[t]);
    }
}

/// One group of 8 Q8_0 weight rows: even and odd blocks in separate sums, the result their sum, as in Swift.
INLINE void q8_0_group(const uint8_t *p, long blocks, const int8_t *x, const float *dx, long n, float *out,
                       long out_stride) {
    __m256 acc0[4], acc1[4];
    for (long t = 0; t < n; t++) acc0[t] = acc1[t] = _mm256_setzero_ps();
    long b = 0;
    for (; b + 2 <= blocks; b += 2, p += 2 * MOPE_Q8_0_GROUP_BLOCK_BYTES) {
        q8_0_block(p, b, blocks, x, dx, n, acc0);
        q8_0_block(p + MOPE_Q8_0_GROUP_BLOCK_BYTES, b + 1, blocks, x, dx, n, acc1);
    }
    if (b < blocks) q8_0_block(p, b, blocks, x, dx, n, acc0);
    for (long t = 0; t < n; t++) _mm256_storeu_ps(out + t * out_stride, _mm256_add_ps(acc0[t], acc1[t]));
}

// Each group's weights (a few KB) stay in L1 while every activation row passes over them, four at a time.
#define ROWS_LOOP(GROUP_CALL_N)                                                                     \
    for (long g = group_begin; g < group_end; g++) {                                                \
        long t = 0;                                                                                 \
        for (; t + 4 <= input_rows; t += 4) GROUP_CALL_N(4);                                        \
        switch (input_rows - t) {                                                                   \
        case 3: GROUP_CALL_N(3); break;                                                             \
        case 2: GROUP_CALL_N(2); break;                                                             \
        case 1: GROUP_CALL_N(1); break;                                                             \
        default: break;                                                                             \
        }                                                                                           \
    }

TARGET void mope_q4_1_rows(const uint8_t *packed, long blocks, long group_begin, long group_end,
                           const int8_t *x, const float *dx, const float *sx, long input_rows,
                           float *out, long out_stride) {
#define Q4_1_CALL(N)                                                                                  \
    q4_1_group(packed + g * blocks * MOPE_Q4_1_GROUP_BLOCK_BYTES, blocks, x + t * 32 * blocks,        \
               dx + t * blocks, sx + t * blocks, N, out + t * out_stride + 8 * g, out_stride)
    ROWS_LOOP(Q4_1_CALL)
#undef Q4_1_CALL
}

TARGET void mope_q8_0_rows(const uint8_t *packed, long blocks, long group_begin, long group_end,
                           const int8_t *x, const float *dx, long input_rows,
                           float *out, long out_stride) {
#define Q8_0_CALL(N)                                                                                  \
    q8_0_group(packed + g * blocks * MOPE_Q8_0_GROUP_BLOCK_BYTES, blocks, x + t * 32 * blocks,        \
               dx + t * blocks, N, out + t * out_stride + 8 * g, out_stride)
    ROWS_LOOP(Q8_0_CALL)
#undef Q8_0_CALL
}

#else

int mope_kernels_available(void) { return 0; }

void mope_q4_1_rows(const uint8_t *packed, long blocks, long group_begin, long group_end,
                    const int8_t *x, const float *dx, const float *sx, long input_rows,
                    float *out, long out_stride) {
    (void)packed; (void)blocks; (void)group_begin; (void)group_end; (void)x; (void)dx; (void)sx;
    (void)input_rows; (void)out; (void)out_stride;
}

void mope_q8_0_rows(const uint8_t *packed, long blocks, long group_begin, long group_end,
                    const int8_t *x, const float *dx, long input_rows,
                    float *out, long out_stride) {
    (void)packed; (void)blocks; (void)group_begin; (void)group_end; (void)x; (void)dx;
    (void)input_rows; (void)out; (void)out_stride;
}

#endif
