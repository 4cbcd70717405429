/* selfalign's fixed-order float BLAS: the few single-precision BLAS routines PyTorch's CPU build
 * calls into oneMKL for (sgemm_, cblas_sgemm_batch, sgemv_, sdot_, saxpy_, cblas_saxpy),
 * written so that every result is fixed by this source alone.
 *
 * Why it exists: oneMKL picks its kernels, blocking and reduction order from the CPU it finds,
 * and even its CNR "COMPATIBLE" branch gave an AMD EPYC other matmul bytes than an Intel Xeon
 * (selfalign.determinism). Loaded with LD_PRELOAD, these definitions take the place of libtorch's
 * (its calls go through the PLT), so the tiny chain's matmuls no longer depend on the vendor.
 *
 * The contract: each output element is computed as
 *     acc = 0; for p = 0 .. k-1: acc = fmaf(a_ip, b_pj, acc)    (single precision, in that order)
 *     c = beta == 0 ? alpha * acc : alpha * acc + beta * c
 * with IEEE-754 binary32 rounding after every operation (fmaf rounds once: C11 7.12.13, exact on
 * every conforming libm, one instruction with -mfma). Built with -ffp-contract=off and without
 * -ffast-math, a C compiler may not fuse or reorder the rest (C11 F.9), so vectorising across
 * independent outputs (what -O3 does here) cannot change a bit: the same numbers on any x86-64
 * CPU, any ISA level, any compiler and any thread count (threads split the output columns).
 * The matrix-vector and dot routines use the same fmaf order; saxpy is y + (alpha * x). */

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How many calls went through this library (tests and sidecars read it through ctypes). PyTorch
 * calls in from several threads at once, so it is counted atomically. */
uint64_t selfalign_fixedblas_calls = 0;
#define COUNT_CALL() __atomic_fetch_add(&selfalign_fixedblas_calls, 1, __ATOMIC_RELAXED)

/* A BLAS routine has no way to report an error: out of memory ends the process, saying why. */
static float *alloc_floats(size_t count) {
    float *p = (float *)malloc(sizeof(float) * (count ? count : 1));
    if (!p) {
        fprintf(stderr, "selfalign fixed-order BLAS: out of memory for %zu floats\n", count);
        abort();
    }
    return p;
}

#define MB 16 /* rows per micro-tile (two AVX2 registers) */
#define NB 6  /* columns per micro-tile: 12 accumulators, 2 A rows and 1 B value in 16 registers */

typedef struct {
    int m, n, k, ta, tb, lda, ldb;
    long rs, cs; /* C(i, j) is c[i * rs + j * cs] */
    float alpha, beta;
    const float *a, *b;
    float *c;
} gemm_args;

static inline float op_a(const gemm_args *g, int i, int p) {
    return g->ta ? g->a[p + (size_t)i * g->lda] : g->a[i + (size_t)p * g->lda];
}
static inline float op_b(const gemm_args *g, int p, int j) {
    return g->tb ? g->b[j + (size_t)p * g->ldb] : g->b[p + (size_t)j * g->ldb];
}

static inline void store(const gemm_args *g, int i, int j, float acc) {
    float *c = &g->c[i * g->rs + j * g->cs];
    float v = g->alpha * acc;
    if (g->beta != 0.0f) {
        float t = g->beta * *c;
        v = v + t;
    }
    *c = v;
}

/* One MB x NB tile of sums: c[q][i] = sum over p of a[p][i] * b[p][q], as fmaf in order of p. */
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
/* The same operations, eight lanes at a time: _mm256_fmadd_ps is fmaf in each lane. */
static void micro_tile(int k, const float *a, const float *b, float c[NB][MB]) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int p = 0; p < k; p++) {
        const float *ar = a + (size_t)p * MB, *br = b + (size_t)p * NB;
        __m256 a0 = _mm256_loadu_ps(ar), a1 = _mm256_loadu_ps(ar + 8), bq;
        bq = _mm256_broadcast_ss(br + 0); c00 = _mm256_fmadd_ps(a0, bq, c00); c01 = _mm256_fmadd_ps(a1, bq, c01);
        bq = _mm256_broadcast_ss(br + 1); c10 = _mm256_fmadd_ps(a0, bq, c10); c11 = _mm256_fmadd_ps(a1, bq, c11);
        bq = _mm256_broadcast_ss(br + 2); c20 = _mm256_fmadd_ps(a0, bq, c20); c21 = _mm256_fmadd_ps(a1, bq, c21);
        bq = _mm256_broadcast_ss(br + 3); c30 = _mm256_fmadd_ps(a0, bq, c30); c31 = _mm256_fmadd_ps(a1, bq, c31);
        bq = _mm256_broadcast_ss(br + 4); c40 = _mm256_fmadd_ps(a0, bq, c40); c41 = _mm256_fmadd_ps(a1, bq, c41);
        bq = _mm256_broadcast_ss(br + 5); c50 = _mm256_fmadd_ps(a0, bq, c50); c51 = _mm256_fmadd_ps(a1, bq, c51);
    }
    _mm256_storeu_ps(c[0], c00); _mm256_storeu_ps(c[0] + 8, c01);
    _mm256_storeu_ps(c[1], c10); _mm256_storeu_ps(c[1] + 8, c11);
    _mm256_storeu_ps(c[2], c20); _mm256_storeu_ps(c[2] + 8, c21);
    _mm256_storeu_ps(c[3], c30); _mm256_storeu_ps(c[3] + 8, c31);
    _mm256_storeu_ps(c[4], c40); _mm256_storeu_ps(c[4] + 8, c41);
    _mm256_storeu_ps(c[5], c50); _mm256_storeu_ps(c[5] + 8, c51);
}
#else
static void micro_tile(int k, const float *a, const float *b, float c[NB][MB]) {
    for (int q = 0; q < NB; q++)
        for (int i = 0; i < MB; i++) c[q][i] = 0.0f;
    for (int p = 0; p < k; p++)
        for (int q = 0; q < NB; q++)
            for (int i = 0; i < MB; i++) c[q][i] = fmaf(a[(size_t)p * MB + i], b[(size_t)p * NB + q], c[q][i]);
}
#endif

/* Columns [j0, j1) of C (j0 a multiple of NB). A is packed into panels of MB rows, p-major
 * (ap[panel][p][0..MB)); B into blocks of NB columns, p-major (bp[block][p][0..NB)). Each C element
 * is one accumulator that takes fmaf(a_ip, b_pj, acc) for p = 0, 1, ..., k-1 in turn. */
static void gemm_columns(const gemm_args *g, const float *ap, const float *bp, int j0, int j1) {
    int k = g->k;
    for (int i0 = 0; i0 < g->m; i0 += MB) {
        const float *a = ap + (size_t)(i0 / MB) * MB * k;
        int mb = g->m - i0 < MB ? g->m - i0 : MB;
        for (int j = j0; j < j1; j += NB) {
            const float *b = bp + (size_t)(j / NB) * NB * k;
            int nb = j1 - j < NB ? j1 - j : NB;
            float c[NB][MB];
            micro_tile(k, a, b, c);
            for (int q = 0; q < nb; q++)
                for (int i = 0; i < mb; i++) store(g, i0 + i, j + q, c[q][i]);
        }
    }
}

typedef struct {
    const gemm_args *g;
    const float *ap, *bp;
    int j0, j1;
} worker_args;

static void *gemm_worker(void *arg) {
    worker_args *w = (worker_args *)arg;
    gemm_columns(w->g, w->ap, w->bp, w->j0, w->j1);
    return NULL;
}

static int max_threads(void) {
    const char *s = getenv("SELFALIGN_BLAS_THREADS");
    if (!s || !*s) s = getenv("OMP_NUM_THREADS");
    int t = s && *s ? atoi(s) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    return t < 1 ? 1 : (t > 64 ? 64 : t);
}

static void fixed_gemm(gemm_args *g) {
    int m = g->m, n = g->n, k = g->k;
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || g->alpha == 0.0f) {
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                float *c = &g->c[i * g->rs + j * g->cs];
                *c = g->beta == 0.0f ? 0.0f : g->beta * *c;
            }
        return;
    }
    if (m < MB && n > m) {
        /* Few rows (a decoding step): compute C' = op(B)' op(A)' instead, so the vectorised
         * dimension is the long one. Each element is the same sum in the same order (a product
         * b * a is a * b exactly), so the bytes do not depend on which way round it ran. */
        gemm_args t = {n, m, k, !g->tb, !g->ta, g->ldb, g->lda, g->cs, g->rs, g->alpha, g->beta, g->b, g->a, g->c};
        fixed_gemm(&t);
        return;
    }
    int panels = (m + MB - 1) / MB;
    float *ap = alloc_floats((size_t)panels * MB * k);
    for (int pn = 0; pn < panels; pn++)
        for (int p = 0; p < k; p++)
            for (int i = 0; i < MB; i++) {
                int row = pn * MB + i;
                ap[((size_t)pn * k + p) * MB + i] = row < m ? op_a(g, row, p) : 0.0f;
            }
    int blocks = (n + NB - 1) / NB;
    float *bp = alloc_floats((size_t)blocks * NB * k);
    for (int bl = 0; bl < blocks; bl++)
        for (int p = 0; p < k; p++)
            for (int q = 0; q < NB; q++) {
                int col = bl * NB + q;
                bp[((size_t)bl * k + p) * NB + q] = col < n ? op_b(g, p, col) : 0.0f;
            }
    /* Threads split the columns: each output is still computed by one thread in the order above,
     * so the count changes the speed, never the bytes. Small products stay on the caller's thread
     * (PyTorch calls these from its own worker threads too, e.g. in attention). */
    int threads = max_threads();
    double work = (double)m * n * k;
    int tiles = (n + NB - 1) / NB;
    if (threads > tiles) threads = tiles;
    if (work < 4.0e6 || threads <= 1) {
        gemm_columns(g, ap, bp, 0, n);
    } else {
        pthread_t tid[64];
        worker_args wa[64];
        char started[64] = {0};
        for (int t = 0; t < threads; t++) {
            int j0 = (int)((long)tiles * t / threads) * NB, j1 = (int)((long)tiles * (t + 1) / threads) * NB;
            if (j1 > n) j1 = n;
            wa[t] = (worker_args){g, ap, bp, j0, j1};
            if (t == threads - 1 || pthread_create(&tid[t], NULL, gemm_worker, &wa[t]) != 0) {
                gemm_worker(&wa[t]);
            } else {
                started[t] = 1;
            }
        }
        for (int t = 0; t < threads; t++)
            if (started[t]) pthread_join(tid[t], NULL);
    }
    free(ap);
    free(bp);
}

static int is_trans(char t) { return t == 'T' || t == 't' || t == 'C' || t == 'c'; }

void sgemm_(const char *transa, const char *transb, const int *m, const int *n, const int *k,
            const float *alpha, const float *a, const int *lda, const float *b, const int *ldb,
            const float *beta, float *c, const int *ldc) {
    COUNT_CALL();
    gemm_args g = {*m, *n, *k, is_trans(*transa), is_trans(*transb), *lda, *ldb, 1, *ldc, *alpha, *beta, a, b, c};
    fixed_gemm(&g);
}

/* CBLAS enums as oneMKL and netlib define them. */
enum { ROW_MAJOR = 101, COL_MAJOR = 102, NO_TRANS = 111 };

void cblas_sgemm_batch(int layout, const int *transa, const int *transb, const int *m, const int *n,
                       const int *k, const float *alpha, const float **a, const int *lda, const float **b,
                       const int *ldb, const float *beta, float **c, const int *ldc, int group_count,
                       const int *group_size) {
    COUNT_CALL();
    size_t idx = 0;
    for (int gi = 0; gi < group_count; gi++) {
        for (int s = 0; s < group_size[gi]; s++, idx++) {
            int ta = transa[gi] != NO_TRANS, tb = transb[gi] != NO_TRANS;
            gemm_args g;
            if (layout == COL_MAJOR) {
                g = (gemm_args){m[gi], n[gi], k[gi], ta, tb, lda[gi], ldb[gi], 1, ldc[gi], alpha[gi], beta[gi],
                                a[idx], b[idx], c[idx]};
            } else { /* row-major C = A B is column-major C' = B' A' */
                g = (gemm_args){n[gi], m[gi], k[gi], tb, ta, ldb[gi], lda[gi], 1, ldc[gi], alpha[gi], beta[gi],
                                b[idx], a[idx], c[idx]};
            }
            fixed_gemm(&g);
        }
    }
}

/* y = alpha * op(A) x + beta * y, each y_i summed over j in order as sgemm_ sums it (so a
 * product's bytes do not depend on whether libtorch called it a matrix-vector product). */
void sgemv_(const char *trans, const int *m, const int *n, const float *alpha, const float *a, const int *lda,
            const float *x, const int *incx, const float *beta, float *y, const int *incy) {
    COUNT_CALL();
    int t = is_trans(*trans);
    int rows = t ? *n : *m, cols = t ? *m : *n;
    if (*m <= 0 || *n <= 0) return;
    long ix0 = *incx > 0 ? 0 : (long)(1 - cols) * *incx, iy0 = *incy > 0 ? 0 : (long)(1 - rows) * *incy;
    for (int i = 0; i < rows; i++) {
        float acc = 0.0f;
        for (int j = 0; j < cols; j++) {
            float aij = t ? a[j + (size_t)i * *lda] : a[i + (size_t)j * *lda];
            acc = fmaf(aij, x[ix0 + (long)j * *incx], acc);
        }
        float *yi = &y[iy0 + (long)i * *incy];
        float v = *alpha * acc;
        if (*beta != 0.0f) {
            float u = *beta * *yi;
            v = v + u;
        }
        *yi = v;
    }
}

float sdot_(const int *n, const float *x, const int *incx, const float *y, const int *incy) {
    COUNT_CALL();
    float acc = 0.0f;
    long ix = *incx > 0 ? 0 : (long)(1 - *n) * *incx, iy = *incy > 0 ? 0 : (long)(1 - *n) * *incy;
    for (int i = 0; i < *n; i++, ix += *incx, iy += *incy) acc = fmaf(x[ix], y[iy], acc);
    return acc;
}

static void axpy(int n, float alpha, const float *x, int incx, float *y, int incy) {
    COUNT_CALL();
    long ix = incx > 0 ? 0 : (long)(1 - n) * incx, iy = incy > 0 ? 0 : (long)(1 - n) * incy;
    for (int i = 0; i < n; i++, ix += incx, iy += incy) {
        float t = alpha * x[ix];
        y[iy] = y[iy] + t;
    }
}

void saxpy_(const int *n, const float *alpha, const float *x, const int *incx, float *y, const int *incy) {
    axpy(*n, *alpha, x, *incx, y, *incy);
}

void cblas_saxpy(int n, float alpha, const float *x, int incx, float *y, int incy) {
    axpy(n, alpha, x, incx, y, incy);
}
