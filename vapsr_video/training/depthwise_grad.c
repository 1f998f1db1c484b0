/*
 * Weight gradient of a stride-1 depthwise convolution on channels-last (NHWC)
 * float32 tensors, for training VapSR on the CPU.
 *
 * PyTorch's CPU backward for depthwise convolutions runs oneDNN's generic
 * kernel, which treats each block of 16 groups as a dense 16x16 convolution and
 * so does 16 times the arithmetic; this loop does only the products needed:
 *     grad_weight[i][j][c] = sum over n, y, x of grad_out[n][y][x][c] * input[n][y + i*dil - pad][x + j*dil - pad][c]
 *
 * Layout of the work: for one output row and one kernel row i, the source row is
 * copied into a zero-padded buffer, so that every kernel column j reads it
 * without bounds checks; then one pass along the row keeps the partial sums of
 * all K columns for two vectors of channels in registers (32 channels with
 * AVX-512, 16 with AVX2), loading each gradient vector once for all K products.
 *
 * Rows (n, y) are split between threads, each with its own accumulator, and the
 * accumulators are added in thread order, so a given thread count always gives
 * the same bits.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* One vector of the target: the 2 * K accumulators of a pass must fit in its registers (32 with AVX-512,
 * 16 with AVX2). 16-lane vectors on an AVX2-only CPU spilled them to the stack: 4x slower. */
#ifndef LANES /* benchmarks may set it: scripts/benchmark_depthwise_grad.py */
#if defined(__AVX512F__)
#define LANES 16
#else
#define LANES 8
#endif
#endif
#define MAX_KERNEL 7

/* Unaligned, aliasing-safe 16-float vectors (GCC/Clang vector extension). */
typedef float vec __attribute__((vector_size(LANES * sizeof(float)), aligned(sizeof(float)), may_alias));

typedef struct {
    const float *input, *grad_out;
    float *acc; /* kernel * kernel * channels */
    int height, width, channels, kernel, pad, dilation, row_begin, row_end;
} Job;

/* Sums over one row for channels [c0, c0 + 2 * LANES): K columns, two vectors each. */
static inline __attribute__((always_inline)) void row_two_blocks(const float *grad_row, const float *padded,
                                                                 float *acc_row, int W, int C, int K, int dilation,
                                                                 int c0) {
    vec a0[MAX_KERNEL] = {0}, a1[MAX_KERNEL] = {0};
    for (int x = 0; x < W; x++) {
        const vec g0 = *(const vec *)(grad_row + (size_t)x * C + c0);
        const vec g1 = *(const vec *)(grad_row + (size_t)x * C + c0 + LANES);
#pragma GCC unroll 8
        for (int j = 0; j < K; j++) {
            const float *v = padded + (size_t)(x + j * dilation) * C + c0;
            a0[j] += g0 * *(const vec *)v;
            a1[j] += g1 * *(const vec *)(v + LANES);
        }
    }
    for (int j = 0; j < K; j++) {
        *(vec *)(acc_row + (size_t)j * C + c0) += a0[j];
        *(vec *)(acc_row + (size_t)j * C + c0 + LANES) += a1[j];
    }
}

static inline __attribute__((always_inline)) void row_one_block(const float *grad_row, const float *padded,
                                                                float *acc_row, int W, int C, int K, int dilation,
                                                                int c0) {
    vec a[MAX_KERNEL] = {0};
    for (int x = 0; x < W; x++) {
        const vec g = *(const vec *)(grad_row + (size_t)x * C + c0);
        for (int j = 0; j < K; j++) a[j] += g * *(const vec *)(padded + (size_t)(x + j * dilation) * C + c0);
    }
    for (int j = 0; j < K; j++) *(vec *)(acc_row + (size_t)j * C + c0) += a[j];
}

static void row_scalar(const float *grad_row, const float *padded, float *acc_row, int W, int C, int K,
                       int dilation, int c0) {
    for (int j = 0; j < K; j++) {
        for (int c = c0; c < C; c++) {
            float sum = 0;
            for (int x = 0; x < W; x++) sum += grad_row[(size_t)x * C + c] * padded[(size_t)(x + j * dilation) * C + c];
            acc_row[(size_t)j * C + c] += sum;
        }
    }
}

/* One row for every channel: pairs of vectors, then one vector, then the scalar rest. */
static inline __attribute__((always_inline)) void row_pass(const float *grad_row, const float *padded,
                                                           float *acc_row, int W, int C, int K, int dilation) {
    int c0 = 0;
    for (; c0 + 2 * LANES <= C; c0 += 2 * LANES) row_two_blocks(grad_row, padded, acc_row, W, C, K, dilation, c0);
    for (; c0 + LANES <= C; c0 += LANES) row_one_block(grad_row, padded, acc_row, W, C, K, dilation, c0);
    if (c0 < C) row_scalar(grad_row, padded, acc_row, W, C, K, dilation, c0);
}

/* The kernel size as a constant lets the compiler unroll the column loops into registers. */
#define ROW_PASS_FOR(KC)                                                                                       \
    static void row_pass_##KC(const float *grad_row, const float *padded, float *acc_row, int W, int C, int K, \
                              int dilation) {                                                                  \
        (void)K;                                                                                               \
        row_pass(grad_row, padded, acc_row, W, C, KC, dilation);                                               \
    }
ROW_PASS_FOR(3)
ROW_PASS_FOR(5)
ROW_PASS_FOR(7)

static void row_pass_any(const float *grad_row, const float *padded, float *acc_row, int W, int C, int K,
                         int dilation) {
    row_pass(grad_row, padded, acc_row, W, C, K, dilation);
}

typedef void (*RowPass)(const float *, const float *, float *, int, int, int, int);

/* Returns 0, or -1 when the row buffer could not be allocated. */
static int accumulate_rows(const Job *job) {
    const int H = job->height, W = job->width, C = job->channels, K = job->kernel, pad = job->pad;
    const RowPass pass = K == 3 ? row_pass_3 : K == 5 ? row_pass_5 : K == 7 ? row_pass_7 : row_pass_any;
    const int padded_width = W + 2 * pad;
    /* Cache-line aligned, so that the vector loads from it do not straddle two lines. */
    const size_t padded_bytes = ((size_t)padded_width * C * sizeof(float) + 63) / 64 * 64;
    float *padded = aligned_alloc(64, padded_bytes);
    if (!padded) return -1;
    memset(padded, 0, padded_bytes); /* the edges stay zero */
    for (int row = job->row_begin; row < job->row_end; row++) {
        const int n = row / H, y = row % H;
        const float *grad_row = job->grad_out + (size_t)row * W * C;
        for (int i = 0; i < K; i++) {
            const int source_y = y + i * job->dilation - pad;
            if (source_y < 0 || source_y >= H) continue;
            memcpy(padded + (size_t)pad * C, job->input + ((size_t)n * H + source_y) * W * C, (size_t)W * C * sizeof(float));
            pass(grad_row, padded, job->acc + (size_t)i * K * C, W, C, K, job->dilation);
        }
    }
    free(padded);
    return 0;
}

typedef struct {
    Job job;
    int status;
} Task;

static void *thread_main(void *task) {
    Task *t = task;
    t->status = accumulate_rows(&t->job);
    return NULL;
}

/* The vector width this build chose, for benchmarks and logs. */
int vapsr_depthwise_lanes(void) { return LANES; }

/* Returns 0, or -1 when memory ran out (out is then untouched). */
int vapsr_depthwise_grad_weight(const float *input, const float *grad_out, float *out, int batch, int height,
                                int width, int channels, int kernel, int pad, int dilation, int threads) {
    if (kernel < 1 || kernel > MAX_KERNEL) return -2;
    const int rows = batch * height;
    if (threads > rows) threads = rows;
    if (threads < 1) threads = 1;
    const size_t per_thread = (size_t)kernel * kernel * channels;
    float *acc = calloc(per_thread * threads, sizeof(float));
    Task *tasks = calloc(threads, sizeof(Task));
    pthread_t *ids = calloc(threads, sizeof(pthread_t));
    if (!acc || !tasks || !ids) {
        free(acc), free(tasks), free(ids);
        return -1;
    }
    for (int t = 0; t < threads; t++) {
        tasks[t].job = (Job){input, grad_out, acc + per_thread * t, height, width, channels, kernel, pad, dilation,
                             (int)((long long)rows * t / threads), (int)((long long)rows * (t + 1) / threads)};
    }
    int started = 1;
    for (; started < threads; started++) {
        if (pthread_create(&ids[started], NULL, thread_main, &tasks[started]) != 0) break;
    }
    /* Rows of threads that could not start are done here, after this thread's own. */
    thread_main(&tasks[0]);
    for (int t = started; t < threads; t++) thread_main(&tasks[t]);
    for (int t = 1; t < started; t++) pthread_join(ids[t], NULL);
    int status = 0;
    for (int t = 0; t < threads; t++) status |= tasks[t].status;
    if (status == 0) {
        memcpy(out, acc, per_thread * sizeof(float));
        for (int t = 1; t < threads; t++) {
            for (size_t e = 0; e < per_thread; e++) out[e] += acc[per_thread * t + e];
        }
    }
    free(acc), free(tasks), free(ids);
    return status == 0 ? 0 : -1;
}
