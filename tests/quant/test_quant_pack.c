/* Issue 4: bit-stream pack/unpack for every bit width and group size, and the affine and MXFP4
 * quantizers on hand-computed groups (mlx's rule: the edge with the larger magnitude is exact). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/util.h"
#include "quant/quant.h"
#include "test_util.h"

static uint32_t rng_state = 12345u;
static uint32_t rng(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return rng_state >> 8;
}
static float frand(void) { return (float)(rng() & 0xffff) / 65536.0f * 2.0f - 1.0f; }

static uint32_t word(const uint8_t *p, int i) {
    return (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
}

/* unpack(pack(q)) == q; the engine's reader (lm_bits_get) sees the same values. */
static void test_round_trip(void) {
    static const int BITS[] = {2, 3, 4, 5, 6, 8}, GROUPS[] = {32, 64, 128};
    for (int bi = 0; bi < 6; bi++)
        for (int gi = 0; gi < 3; gi++) {
            int bits = BITS[bi], bad = 0;
            size_t n = (size_t)GROUPS[gi] * 3;
            uint8_t q[384], back[384], stream[400];
            memset(stream, 0xAA, sizeof stream);
            for (size_t k = 0; k < n; k++) /* all ones first and zero last included */
                q[k] = k == 0 ? (uint8_t)((1u << bits) - 1) : k + 1 == n ? 0 : (uint8_t)(rng() & ((1u << bits) - 1));
            lm_bits_pack(stream, bits, q, n);
            lm_bits_unpack(stream, bits, n, back);
            for (size_t k = 0; k < n; k++)
                bad += back[k] != q[k] || lm_bits_get(stream, bits, k) != q[k];
            CHECKF(bad == 0, "bits %d group %d: %d values differ", bits, GROUPS[gi], bad);
            CHECKF(lm_bits_bytes(bits, n) == n * (size_t)bits / 8, "bits %d: byte count", bits);
            CHECKF(stream[n * (size_t)bits / 8] == 0xAA, "bits %d: wrote past the stream", bits);
        }
}

/* Values crossing 32-bit word boundaries, against words computed by hand:
 * q_k = (5k + 1) mod 2^bits, value k at bits [k*bits, (k+1)*bits) of the LE stream. */
static void test_known_words(void) {
    static const uint32_t W3[] = {0xf19d50f1, 0x50f19d50, 0x9d50f19d};
    static const uint32_t W5[] = {0xf5582cc1, 0xdc4dc927, 0x6ed161c5, 0xd9a3d450, 0xe5e4d40f};
    static const uint32_t W6[] = {0x9540b181, 0x3ba991f6, 0x3070bde3, 0xa581b591, 0x3fb9d2fa, 0x71748d20};
    const uint32_t *want[] = {W3, W5, W6};
    int bits_of[] = {3, 5, 6};
    for (int c = 0; c < 3; c++) {
        int bits = bits_of[c];
        uint8_t q[32], s[32];
        for (int k = 0; k < 32; k++)
            q[k] = (uint8_t)((5 * k + 1) % (1 << bits));
        lm_bits_pack(s, bits, q, 32);
        for (int i = 0; i < bits; i++)
            CHECKF(word(s, i) == want[c][i], "bits %d word %d: %08x, expected %08x", bits, i, word(s, i), want[c][i]);
    }
    /* 3 bits: value 10 takes bits 30..32, i.e. the top two bits of word 0 and bit 0 of word 1 */
    uint8_t q[32] = {0}, s[12];
    q[10] = 5; /* 0b101 */
    lm_bits_pack(s, 3, q, 32);
    CHECK(word(s, 0) == 0x40000000u && word(s, 1) == 1u && word(s, 2) == 0u);
}

static void test_affine_hand(void) {
    float w[128], sc[4], bi[4];
    uint8_t p[128], q[128];
    /* 0..63, 4 bits: the max (63) has the larger magnitude: scale = -(63/15), q0 = -15, bias 63 */
    for (int i = 0; i < 64; i++)
        w[i] = (float)i;
    lm_affine_quantize_row(w, 64, 4, 64, p, sc, bi);
    lm_bits_unpack(p, 4, 64, q);
    CHECKF(sc[0] == 63.0f / -15.0f && bi[0] == 63.0f, "scale %g bias %g", sc[0], bi[0]);
    CHECK(q[0] == 15 && q[63] == 0 && q[31] == 8 && q[32] == 7); /* (31-63)/-4.2 = 7.62; (32-63)/-4.2 = 7.38 */
    /* -8..7, group 32, 4 bits: the min (-8) is the edge: scale 1, bias -8, q = w + 8, all exact */
    for (int i = 0; i < 32; i++)
        w[i] = (float)(i % 16 - 8);
    lm_affine_quantize_row(w, 32, 4, 32, p, sc, bi);
    lm_bits_unpack(p, 4, 32, q);
    float deq[32];
    lm_affine_dequant_row(p, (const uint8_t *)sc, (const uint8_t *)bi, LM_DT_F32, 4, 32, 32, deq);
    int bad = 0;
    for (int i = 0; i < 32; i++)
        bad += q[i] != (uint8_t)(i % 16) || deq[i] != w[i];
    CHECKF(sc[0] == 1.0f && bi[0] == -8.0f && bad == 0, "scale %g bias %g, %d bad", sc[0], bi[0], bad);
    /* all zeros: q0 = 0 keeps scale = -1e-7 (the eps, negated) and bias 0 */
    memset(w, 0, sizeof w);
    lm_affine_quantize_row(w, 32, 8, 32, p, sc, bi);
    CHECK(sc[0] == -1e-7f && bi[0] == 0.0f && p[0] == 0 && p[31] == 0);
    /* 2 bits, group 32, values {-1, 0, 0.5, 2}: max 2 is the edge; scale = -(3/3) -> q0 = -2,
       scale = 2 / -2 = -1, bias 2; q = rint((w - 2) / -1) = 3, 2, rint(1.5) = 2, 0 */
    for (int i = 0; i < 32; i++)
        w[i] = i % 4 == 0 ? -1.0f : i % 4 == 1 ? 0.0f : i % 4 == 2 ? 0.5f : 2.0f;
    lm_affine_quantize_row(w, 32, 2, 32, p, sc, bi);
    lm_bits_unpack(p, 2, 32, q);
    CHECKF(sc[0] == -1.0f && bi[0] == 2.0f, "2-bit scale %g bias %g", sc[0], bi[0]);
    CHECK(q[0] == 3 && q[1] == 2 && q[2] == 2 && q[3] == 0 && p[0] == (3 | 2 << 2 | 2 << 4 | 0 << 6));
}

/* Random rows, every width: |w - deq| <= |scale|/2 except where the code is clipped (the scale
 * is adjusted to make the edge exact, so the far end may fall outside the range: at most
 * 1.5 |scale|), and the edge is exact. */
static void test_affine_random(void) {
    static const int BITS[] = {2, 3, 4, 5, 6, 8}, GROUPS[] = {32, 64, 128};
    for (int bi_ = 0; bi_ < 6; bi_++)
        for (int gi = 0; gi < 3; gi++) {
            int bits = BITS[bi_], g = GROUPS[gi], n = 256;
            float w[256], deq[256], sc[8], bs[8];
            uint8_t p[256];
            for (int i = 0; i < n; i++)
                w[i] = frand() * (1.0f + (float)(i / g));
            lm_affine_quantize_row(w, n, bits, g, p, sc, bs);
            lm_affine_dequant_row(p, (const uint8_t *)sc, (const uint8_t *)bs, LM_DT_F32, bits, g, n, deq);
            double worst = 0;
            int edge_ok = 1, unclipped_bad = 0;
            uint8_t q[256];
            lm_bits_unpack(p, bits, (size_t)n, q);
            for (int k = 0; k < n / g; k++) {
                float mn = w[k * g], mx = w[k * g];
                for (int i = k * g; i < (k + 1) * g; i++) {
                    mn = fminf(mn, w[i]);
                    mx = fmaxf(mx, w[i]);
                    double e = fabs((double)deq[i] - w[i]) / fabs((double)sc[k]);
                    worst = e > worst ? e : worst;
                    unclipped_bad += e > 0.5 + 1e-4 && q[i] != 0 && q[i] != (1 << bits) - 1;
                }
                float edge = fabsf(mn) > fabsf(mx) ? mn : mx;
                edge_ok = edge_ok && bs[k] == edge;
                int found = 0;
                for (int i = k * g; i < (k + 1) * g; i++)
                    found |= w[i] == edge && deq[i] == edge;
                edge_ok = edge_ok && found;
            }
            CHECKF(worst <= 1.5, "bits %d group %d: error %.4f scales", bits, g, worst);
            CHECKF(unclipped_bad == 0, "bits %d group %d: %d unclipped values off by more than half a step", bits, g,
                   unclipped_bad);
            CHECKF(edge_ok, "bits %d group %d: the edge value is not exact", bits, g);
        }
}

static void test_mxfp4(void) {
    float w[64] = {6, 3, -1.5f, 0.25f, -0.25f, 1.25f, 0.75f, 5, -6, 0.1f, -0.0f, 2.5f};
    /* group 2: max 9 -> s = 1.5, log2 = 0.585 -> e = 1; 9/2 = 4.5 -> 4 (idx 6); 1.4/2 = 0.7 -> 0.5 */
    w[32] = 9.0f;
    w[33] = 1.4f;
    w[34] = -12.0f; /* -6 */
    uint8_t p[32], s[2], q[64];
    lm_mxfp4_quantize_row(w, 64, LM_DT_F32, p, s);
    lm_bits_unpack(p, 4, 64, q);
    /* group 1: max 6 -> scale 2^0 (e8m0 127); ties go to the smaller magnitude, +0 before -0 */
    static const uint8_t WANT1[12] = {7, 5, 11, 0, 0, 2, 1, 6, 15, 0, 0, 4};
    int bad = 0;
    for (int i = 0; i < 12; i++)
        bad += q[i] != WANT1[i];
    CHECKF(s[0] == 127 && bad == 0, "group 1: scale %u, %d codes differ", s[0], bad);
    CHECKF(s[1] == 128 && q[32] == 6 && q[33] == 1 && q[34] == 15, "group 2: scale %u codes %u %u %u", s[1], q[32],
           q[33], q[34]);
    float deq[64];
    lm_mxfp4_dequant_row(p, s, 64, deq);
    CHECK(deq[0] == 6.0f && deq[2] == -1.5f && deq[32] == 8.0f && deq[34] == -12.0f);
    /* small values: max 0.75 -> s = 0.125 -> e = -3 (e8m0 124); 0.75 * 8 = 6; all-zero group -> 127 */
    memset(w, 0, sizeof w);
    w[0] = 0.75f;
    w[1] = -0.375f;
    lm_mxfp4_quantize_row(w, 64, LM_DT_BF16, p, s);
    lm_bits_unpack(p, 4, 64, q);
    CHECKF(s[0] == 124 && q[0] == 7 && q[1] == 13 && s[1] == 127 && q[40] == 0, "small: scale %u codes %u %u", s[0],
           q[0], q[1]);
}

static void test_dtype_helpers(void) {
    uint8_t b[8];
    lm_f32_store(b, LM_DT_BF16, 1, 1.00390625f); /* 1 + 2^-8: halfway, ties to even -> 1.0 */
    CHECK(b[2] == 0x80 && b[3] == 0x3f);
    CHECK(lm_round_to_dtype(1.0f + 3.0f / 512.0f, LM_DT_BF16) == 1.0078125f);
    CHECK(lm_round_to_dtype(0.1f, LM_DT_F32) == 0.1f);
    CHECK(lm_round_to_dtype(65520.0f, LM_DT_F16) == INFINITY);
}

int main(void) {
    test_round_trip();
    test_known_words();
    test_affine_hand();
    test_affine_random();
    test_mxfp4();
    test_dtype_helpers();
    return test_done("quant_pack");
}
