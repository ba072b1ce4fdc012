#ifndef MOPE_CKERNELS_H
#define MOPE_CKERNELS_H

#include <stdint.h>

/// Kernels for the hot matrix products of a decode step, in C with x86 intrinsics: AVX2's `vpmaddubsw` multiplies 32
/// unsigned weight bytes by 32 signed activation bytes in one instruction, which Swift's SIMD types cannot express.
///
/// Weights are repacked once, at load time, into groups of 8 rows ("packed" layout): for each group and each block of
/// 32 columns, the 8 rows' f16 scales side by side, then the weight bytes as 32-byte vectors whose 32-bit lane `j`
/// holds 4 bytes of row `j`. One vector load then feeds 8 rows at once, a broadcast of 4 activation bytes meets it,
/// and every product of a block lands in the lane of its row: no horizontal sums.
///
/// The integer block sums are exact and the float arithmetic around them is that of the portable Swift kernels,
/// operation for operation, so the results are the Swift kernels' bits: whatever the batch around a row (the
/// contract of `Kernels.matmul`), and whichever path a machine takes.

/// Bytes per group of 8 rows and one block of 32 columns, in the packed layouts.
#define MOPE_Q4_1_GROUP_BLOCK_BYTES 160
#define MOPE_Q8_0_GROUP_BLOCK_BYTES 272

/// 1 when this CPU runs the kernels (x86-64 with AVX2, FMA and F16C) and the build did not ask for the portable
/// path; 0 otherwise, and then the other functions must not be called except the pack functions.
int mope_kernels_available(void);

/// Repacks `rows` rows (a multiple of 8) of `blocks` Q4_1 blocks each (20 bytes: f16 d, f16 m, 16 nibble bytes) from
/// `src` into `dst` (rows·blocks·20 bytes). Group `g`, block `b` starts at byte `(g·blocks + b)·160`: 8 f16 `d`, 8 f16
/// `m`, then four 32-byte vectors, vector `k` holding bytes `4k…4k+3` of row `j`'s nibbles in lane `j`.
void mope_q4_1_pack(const uint8_t *src, uint8_t *dst, long rows, long blocks);

/// Repacks Q8_0 rows (34 bytes a block: f16 d, 32 signed bytes) the same way: per group and block 8 f16 `d`, then
/// eight 32-byte vectors, vector `k` holding bytes `4k…4k+3` of row `j` in lane `j` (272 bytes).
void mope_q8_0_pack(const uint8_t *src, uint8_t *dst, long rows, long blocks);

/// Rows `8·group_begin ..< 8·group_end` of `W · x` for `input_rows` activation rows, W packed by `mope_q4_1_pack`.
///
/// `x` holds the activation rows quantised to 8 bits (`columns = 32·blocks` values each, in −127…127), `dx` their
/// per-block scales and `sx` the per-block scaled sums `dx·Σq` (`input_rows × blocks` each). Output `r` of input
/// row `t` goes to `out[t·out_stride + r]`. Per block: `acc += d_w · (dx · Σ q_w·q_x)` and `off += m_w · sx`, even
/// and odd blocks in separate sums; the result is `(acc_even + acc_odd) + (off_even + off_odd)`.
void mope_q4_1_rows(const uint8_t *packed, long blocks, long group_begin, long group_end,
                    const int8_t *x, const float *dx, const float *sx, long input_rows,
                    float *out, long out_stride);

/// The same for Q8_0 weights packed by `mope_q8_0_pack`: per block `acc += d_w · (dx · Σ q_w·q_x)`, the result
/// `acc_even + acc_odd`.
void mope_q8_0_rows(const uint8_t *packed, long blocks, long group_begin, long group_end,
                    const int8_t *x, const float *dx, long input_rows,
                    float *out, long out_stride);

#endif
