/*
 * Reference JPEG-LS timing with Debian's CharLS (libcharls-dev), in process, so no file I/O
 * or process start-up is timed. Used by scripts/bench-codecs.sh.
 *
 *   charls_bench RAW WIDTH HEIGHT COMPONENTS BITS_ALLOCATED BITS_STORED NEAR MIN_SECS [OURS]
 *
 * RAW holds native little-endian samples (components interleaved), exactly the DICOM Explicit
 * VR LE frame; 16-bit samples are coded as their stored bit patterns (masked to BITS_STORED),
 * as tsunagi's encoder does. Colour uses sample interleave (ILV 2), no colour transform, as
 * tsunagi does. Encodes and decodes repeatedly for at least MIN_SECS each (and at least 3
 * times), checks the round trip (bit-exact for NEAR 0, within NEAR otherwise), and if OURS is
 * given also times decoding that file (tsunagi's encoding of the same frame) and checks it.
 *
 * Prints one line of key=value pairs: encoded size and median encode/decode seconds.
 */
#include <charls/charls.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void die(const char *what, charls_jpegls_errc e) {
    fprintf(stderr, "charls_bench: %s: %s\n", what, charls_get_error_message(e));
    exit(1);
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "charls_bench: cannot read %s\n", path);
        exit(1);
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Decode src into dst (dst_len bytes); returns seconds. */
static double decode_once(const unsigned char *src, size_t len, unsigned char *dst, size_t dst_len) {
    double t = now();
    charls_jpegls_decoder *dec = charls_jpegls_decoder_create();
    charls_jpegls_errc e = charls_jpegls_decoder_set_source_buffer(dec, src, len);
    if (e) die("set_source_buffer", e);
    if ((e = charls_jpegls_decoder_read_header(dec))) die("read_header", e);
    size_t need = 0;
    if ((e = charls_jpegls_decoder_get_destination_size(dec, 0, &need))) die("get_destination_size", e);
    if (need != dst_len) {
        fprintf(stderr, "charls_bench: decoded size %zu, expected %zu\n", need, dst_len);
        exit(1);
    }
    if ((e = charls_jpegls_decoder_decode_to_buffer(dec, dst, dst_len, 0))) die("decode_to_buffer", e);
    charls_jpegls_decoder_destroy(dec);
    return now() - t;
}

/* Largest absolute difference between the stored values of a and b. */
static long max_error(const unsigned char *a, const unsigned char *b, size_t samples, int wide, uint32_t mask) {
    long worst = 0;
    for (size_t i = 0; i < samples; i++) {
        long x, y;
        if (wide) {
            x = (long)(((uint32_t)a[2 * i] | ((uint32_t)a[2 * i + 1] << 8)) & mask);
            y = (long)(((uint32_t)b[2 * i] | ((uint32_t)b[2 * i + 1] << 8)) & mask);
        } else {
            x = a[i];
            y = b[i];
        }
        long d = labs(x - y);
        if (d > worst) worst = d;
    }
    return worst;
}

int main(int argc, char **argv) {
    if (argc < 9) {
        fprintf(stderr, "usage: %s RAW WIDTH HEIGHT COMPONENTS BITS_ALLOCATED BITS_STORED NEAR MIN_SECS [OURS]\n", argv[0]);
        return 2;
    }
    size_t raw_len;
    unsigned char *raw = read_file(argv[1], &raw_len);
    uint32_t width = (uint32_t)atoi(argv[2]), height = (uint32_t)atoi(argv[3]);
    int32_t comps = atoi(argv[4]), bits_alloc = atoi(argv[5]), bits = atoi(argv[6]);
    int32_t near = atoi(argv[7]);
    double min_secs = atof(argv[8]);
    int wide = bits_alloc > 8;
    size_t samples = (size_t)width * height * (size_t)comps;
    if (raw_len != samples * (wide ? 2 : 1)) {
        fprintf(stderr, "charls_bench: %s has %zu bytes, expected %zu\n", argv[1], raw_len, samples * (wide ? 2 : 1));
        return 1;
    }
    uint32_t mask = bits >= 32 ? 0xFFFFFFFFu : ((1u << bits) - 1);
    /* Stored bit patterns, as tsunagi codes them. */
    unsigned char *src = malloc(raw_len);
    memcpy(src, raw, raw_len);
    if (wide && bits < 16) {
        for (size_t i = 0; i < samples; i++) {
            uint32_t v = ((uint32_t)src[2 * i] | ((uint32_t)src[2 * i + 1] << 8)) & mask;
            src[2 * i] = (unsigned char)v;
            src[2 * i + 1] = (unsigned char)(v >> 8);
        }
    }

    enum { MAX_ITERS = 1000 };
    static double enc_t[MAX_ITERS], dec_t[MAX_ITERS], ours_t[MAX_ITERS];
    unsigned char *out = NULL;
    size_t out_cap = 0, written = 0;
    int enc_n = 0;
    double start = now();
    while (enc_n < MAX_ITERS && (enc_n < 3 || now() - start < min_secs)) {
        double t = now();
        charls_jpegls_encoder *enc = charls_jpegls_encoder_create();
        charls_frame_info fi = {width, height, bits, comps};
        charls_jpegls_errc e = charls_jpegls_encoder_set_frame_info(enc, &fi);
        if (e) die("set_frame_info", e);
        if (comps > 1 && (e = charls_jpegls_encoder_set_interleave_mode(enc, CHARLS_INTERLEAVE_MODE_SAMPLE)))
            die("set_interleave_mode", e);
        if ((e = charls_jpegls_encoder_set_near_lossless(enc, near))) die("set_near_lossless", e);
        size_t cap = 0;
        if ((e = charls_jpegls_encoder_get_estimated_destination_size(enc, &cap))) die("estimated size", e);
        /* Allocating the output each time, as a codec returning a fresh buffer must. */
        out = realloc(out, cap);
        out_cap = cap;
        if ((e = charls_jpegls_encoder_set_destination_buffer(enc, out, out_cap))) die("set_destination_buffer", e);
        if ((e = charls_jpegls_encoder_encode_from_buffer(enc, src, raw_len, 0))) die("encode_from_buffer", e);
        if ((e = charls_jpegls_encoder_get_bytes_written(enc, &written))) die("get_bytes_written", e);
        charls_jpegls_encoder_destroy(enc);
        enc_t[enc_n++] = now() - t;
    }

    unsigned char *dst = malloc(raw_len);
    int dec_n = 0;
    start = now();
    while (dec_n < MAX_ITERS && (dec_n < 3 || now() - start < min_secs))
        dec_t[dec_n++] = decode_once(out, written, dst, raw_len);
    long err = max_error(src, dst, samples, wide, mask);
    if ((near == 0 && err != 0) || err > near) {
        fprintf(stderr, "charls_bench: round trip error %ld with NEAR %d\n", err, near);
        return 1;
    }

    printf("encoded_bytes=%zu enc_s=%.9f enc_iters=%d dec_s=%.9f dec_iters=%d max_err=%ld",
           written, median(enc_t, enc_n), enc_n, median(dec_t, dec_n), dec_n, err);

    if (argc > 9) {
        size_t ours_len;
        unsigned char *ours = read_file(argv[9], &ours_len);
        int n = 0;
        start = now();
        while (n < MAX_ITERS && (n < 3 || now() - start < min_secs))
            ours_t[n++] = decode_once(ours, ours_len, dst, raw_len);
        long oerr = max_error(src, dst, samples, wide, mask);
        if ((near == 0 && oerr != 0) || oerr > near) {
            fprintf(stderr, "charls_bench: our codestream decodes with error %ld (NEAR %d)\n", oerr, near);
            return 1;
        }
        printf(" ours_dec_s=%.9f ours_dec_iters=%d ours_max_err=%ld", median(ours_t, n), n, oerr);
        free(ours);
    }
    printf("\n");
    free(raw);
    free(src);
    free(dst);
    free(out);
    return 0;
}
