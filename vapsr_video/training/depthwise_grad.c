/*
 * Weight gradient of a stride-1 depthwise convolution on channels-last (NHWC)
 * float32 tensors, for training VapSR on the CPU.
 *
 * PyTorch's CPU backward for depthwise convolutions runs oneDNN's generic
 * kernel, which treats each block of 16 groups as a dense 16x16 convolution and
 * so does 16 times the arithmetic; this loop does only the products needed:
 *     grad_weight[i][j][c] = sum over n, y, x of grad_out[n][y][x][c] * input[n][y + i*dil - pad][x + j*dil - pad][c]
 * Rows (n, y) are split between threads, each with its own accumulator, and the
 * accumulators are added in thread order, so a given thread count always gives
 * the same bits.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define LANES 16 /* channels summed in registers at once: one AVX-512 vector, two AVX2 ones */

typedef struct {
    const float *input, *grad_out;
    float *acc; /* kernel * kernel * channels */
    int height, width, channels, kernel, pad, dilation, row_begin, row_end;
} Job;

static void accumulate_rows(const Job *job) {
    const int H = job->height, W = job->width, C = job->channels, K = job->kernel;
    for (int row = job->row_begin; row < job->row_end; row++) {
        const int n = row / H, y = row % H;
        const float *grad_row = job->grad_out + (size_t)row * W * C;
        for (int i = 0; i < K; i++) {
            const int source_y = y + i * job->dilation - job->pad;
            if (source_y < 0 || source_y >= H) continue;
            const float *input_row = job->input + ((size_t)n * H + source_y) * W * C;
            for (int j = 0; j < K; j++) {
                float *restrict acc = job->acc + (size_t)(i * K + j) * C;
                const int shift = j * job->dilation - job->pad;
                const int x_begin = shift < 0 ? -shift : 0, x_end = shift > 0 ? W - shift : W;
                int c0 = 0;
                for (; c0 + LANES <= C; c0 += LANES) {
                    /* A register-sized partial sum along the row saves a load and a store per product. */
                    float partial[LANES] = {0};
                    for (int x = x_begin; x < x_end; x++) {
                        const float *restrict g = grad_row + (size_t)x * C + c0;
                        const float *restrict v = input_row + (size_t)(x + shift) * C + c0;
                        for (int l = 0; l < LANES; l++) partial[l] += g[l] * v[l];
                    }
                    for (int l = 0; l < LANES; l++) acc[c0 + l] += partial[l];
                }
                for (int x = x_begin; x < x_end; x++) {
                    const float *restrict g = grad_row + (size_t)x * C;
                    const float *restrict v = input_row + (size_t)(x + shift) * C;
                    for (int c = c0; c < C; c++) acc[c] += g[c] * v[c];
                }
            }
        }
    }
}

static void *thread_main(void *job) {
    accumulate_rows(job);
    return NULL;
}

/* Returns 0, or -1 when memory ran out (out is then untouched). */
int vapsr_depthwise_grad_weight(const float *input, const float *grad_out, float *out, int batch, int height,
                                int width, int channels, int kernel, int pad, int dilation, int threads) {
    const int rows = batch * height;
    if (threads > rows) threads = rows;
    if (threads < 1) threads = 1;
    const size_t per_thread = (size_t)kernel * kernel * channels;
    float *acc = calloc(per_thread * threads, sizeof(float));
    Job *jobs = calloc(threads, sizeof(Job));
    pthread_t *ids = calloc(threads, sizeof(pthread_t));
    if (!acc || !jobs || !ids) {
        free(acc), free(jobs), free(ids);
        return -1;
    }
    for (int t = 0; t < threads; t++) {
        jobs[t] = (Job){input, grad_out, acc + per_thread * t, height, width, channels, kernel, pad, dilation,
                        (int)((long long)rows * t / threads), (int)((long long)rows * (t + 1) / threads)};
    }
    int started = 1;
    for (; started < threads; started++) {
        if (pthread_create(&ids[started], NULL, thread_main, &jobs[started]) != 0) break;
    }
    /* Rows of threads that could not start are done here, after this thread's own. */
    accumulate_rows(&jobs[0]);
    for (int t = started; t < threads; t++) {
        Job rest = jobs[t];
        accumulate_rows(&rest);
    }
    for (int t = 1; t < started; t++) pthread_join(ids[t], NULL);
    memcpy(out, acc, per_thread * sizeof(float));
    for (int t = 1; t < threads; t++) {
        for (size_t e = 0; e < per_thread; e++) out[e] += acc[per_thread * t + e];
    }
    free(acc), free(jobs), free(ids);
    return 0;
}
