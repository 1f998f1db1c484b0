/*
 * vapsr: the native VapourSynth namespace `core.vapsr.Upscale(clip, ...)`.
 *
 * A thin shim. VapourSynth can only get a new namespace from a native plugin,
 * but the model lives in Python (the same `vapsr_video.inference.Upscaler` as
 * the command line), so this file validates nothing about the model itself:
 * it hands the arguments to `vapsr_video.vapoursynth.native.create_filter` at
 * script time and, for every frame, the planes to the returned object's
 * `process` method.
 *
 * The library is deliberately NOT linked to libpython and does not include
 * Python.h: every Python C-API function is looked up at run time in the host
 * process (only stable-ABI functions are used). A host without a Python
 * interpreter can therefore still load the plugin, and `Upscale` then fails
 * with a readable message instead of the plugin silently not loading.
 *
 * Shutdown: a VapourSynth worker thread must never wait for the GIL once the
 * interpreter has started finalising (CPython would end that thread under
 * the core's feet). The Python side registers an atexit hook that calls
 * `vapsr_shutdown` (its address is passed in at create time): from then on no
 * thread enters Python, and the hook waits for the calls already inside.
 */

#define _POSIX_C_SOURCE 200809L /* nanosleep under -std=c11 */

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "VapourSynth4.h"

#ifdef _WIN32
#include <windows.h>
#else
#include <dlfcn.h>
#include <pthread.h>
#endif

#define ERROR_SIZE 1024
#define PYBUF_READ 0x100
#define PYBUF_WRITE 0x200
#define BRIDGE_MODULE "vapsr_video.vapoursynth.native"

/* ---- the Python C API, resolved at run time ---------------------------- */

typedef struct PyObjectOpaque PyObject;
typedef ptrdiff_t Py_ssize_t;
typedef int PyGILState_STATE;

static struct {
    int (*IsInitialized)(void);
    int (*IsFinalizing)(void); /* Py_IsFinalizing (3.13+) or _Py_IsFinalizing; may be NULL */
    PyGILState_STATE (*GILState_Ensure)(void);
    void (*GILState_Release)(PyGILState_STATE);
    PyObject *(*Import_ImportModule)(const char *);
    PyObject *(*Object_CallMethod)(PyObject *, const char *, const char *, ...);
    PyObject *(*Object_Str)(PyObject *);
    PyObject *(*MemoryView_FromMemory)(char *, Py_ssize_t, int);
    PyObject *(*Tuple_GetItem)(PyObject *, Py_ssize_t);
    Py_ssize_t (*Tuple_Size)(PyObject *);
    long (*Long_AsLong)(PyObject *);
    const char *(*Unicode_AsUTF8AndSize)(PyObject *, Py_ssize_t *);
    void (*Err_Fetch)(PyObject **, PyObject **, PyObject **);
    void (*Err_Clear)(void);
    void (*IncRef)(PyObject *);
    void (*DecRef)(PyObject *);
    PyObject *None;
    int loaded;
} py;

static void *find_symbol(const char *name) {
#ifdef _WIN32
    /* Untested: the stable-ABI forwarder exists in every Windows Python >= 3.5. */
    HMODULE module = GetModuleHandleA("python3.dll");
    return module ? (void *)GetProcAddress(module, name) : NULL;
#else
    return dlsym(RTLD_DEFAULT, name);
#endif
}

#define RESOLVE(field, name)                         \
    do {                                             \
        *(void **)(&py.field) = find_symbol(name);   \
        if (!py.field) return 0;                     \
    } while (0)

static int resolve_python_api(void) {
    RESOLVE(IsInitialized, "Py_IsInitialized");
    RESOLVE(GILState_Ensure, "PyGILState_Ensure");
    RESOLVE(GILState_Release, "PyGILState_Release");
    RESOLVE(Import_ImportModule, "PyImport_ImportModule");
    RESOLVE(Object_CallMethod, "PyObject_CallMethod");
    RESOLVE(Object_Str, "PyObject_Str");
    RESOLVE(MemoryView_FromMemory, "PyMemoryView_FromMemory");
    RESOLVE(Tuple_GetItem, "PyTuple_GetItem");
    RESOLVE(Tuple_Size, "PyTuple_Size");
    RESOLVE(Long_AsLong, "PyLong_AsLong");
    RESOLVE(Unicode_AsUTF8AndSize, "PyUnicode_AsUTF8AndSize");
    RESOLVE(Err_Fetch, "PyErr_Fetch");
    RESOLVE(Err_Clear, "PyErr_Clear");
    RESOLVE(IncRef, "Py_IncRef");
    RESOLVE(DecRef, "Py_DecRef");
    RESOLVE(None, "_Py_NoneStruct");
    *(void **)(&py.IsFinalizing) = find_symbol("Py_IsFinalizing");
    if (!py.IsFinalizing) *(void **)(&py.IsFinalizing) = find_symbol("_Py_IsFinalizing");
    py.loaded = 1;
    return 1;
}

#ifdef _WIN32
static INIT_ONCE resolve_once = INIT_ONCE_STATIC_INIT;
static BOOL CALLBACK resolve_windows(PINIT_ONCE once, PVOID parameter, PVOID *context) {
    (void)once; (void)parameter; (void)context;
    resolve_python_api();
    return TRUE;
}
static void resolve_python_api_once(void) { InitOnceExecuteOnce(&resolve_once, resolve_windows, NULL, NULL); }
#else
static pthread_once_t resolve_once = PTHREAD_ONCE_INIT;
static void resolve_posix(void) { resolve_python_api(); }
static void resolve_python_api_once(void) { pthread_once(&resolve_once, resolve_posix); }
#endif

/* ---- entering Python safely, also while the host is shutting down ------- */

static atomic_int shutting_down = 0;
static atomic_int calls_inside = 0;

/* Called through ctypes (GIL released) by the Python atexit hook. */
static int vapsr_shutdown(double timeout_seconds) {
    atomic_store(&shutting_down, 1);
    const struct timespec pause = {0, 2 * 1000 * 1000};
    double waited = 0.0;
    while (atomic_load(&calls_inside) > 0) {
        if (waited >= timeout_seconds) return 0;
#ifdef _WIN32
        Sleep(2);
#else
        nanosleep(&pause, NULL);
#endif
        waited += 0.002;
    }
    return 1;
}

static int python_usable(void) {
    if (!py.loaded || !py.IsInitialized()) return 0;
    if (py.IsFinalizing && py.IsFinalizing()) return 0;
    return 1;
}

/* Counts the caller as inside Python before checking the flag, so that the
 * atexit hook either sees it and waits, or the caller sees the flag. */
static int enter_python(PyGILState_STATE *state) {
    atomic_fetch_add(&calls_inside, 1);
    if (atomic_load(&shutting_down) || !python_usable()) {
        atomic_fetch_sub(&calls_inside, 1);
        return 0;
    }
    *state = py.GILState_Ensure();
    return 1;
}

static void leave_python(PyGILState_STATE state) {
    py.GILState_Release(state);
    atomic_fetch_sub(&calls_inside, 1);
}

/* The pending Python exception as one line (clears it). GIL held. */
static void take_python_error(char *buffer, size_t size, const char *context) {
    PyObject *type = NULL, *value = NULL, *traceback = NULL;
    py.Err_Fetch(&type, &value, &traceback);
    const char *text = NULL;
    PyObject *str = value ? py.Object_Str(value) : NULL;
    if (str) text = py.Unicode_AsUTF8AndSize(str, NULL);
    if (!text) py.Err_Clear();
    snprintf(buffer, size, "vapsr.Upscale: %s: %s", context, text && *text ? text : "unknown Python error");
    if (str) py.DecRef(str);
    if (type) py.DecRef(type);
    if (value) py.DecRef(value);
    if (traceback) py.DecRef(traceback);
}

/* Copies a Python str into buffer; returns 0 if obj is not a str. GIL held. */
static int copy_python_str(PyObject *obj, char *buffer, size_t size) {
    const char *text = py.Unicode_AsUTF8AndSize(obj, NULL);
    if (!text) {
        py.Err_Clear();
        return 0;
    }
    snprintf(buffer, size, "%s", text);
    return 1;
}

/* ---- the filter ---------------------------------------------------------- */

typedef struct {
    VSNode *node;
    int scale;
    PyObject *filter; /* vapsr_video.vapoursynth.native.NativeFilter */
} UpscaleData;

static void release_memoryview(PyObject *view) {
    if (!view) return;
    /* Python code must not keep a plane past the call: release() makes any
     * leftover reference raise instead of touching freed frame memory. */
    PyObject *result = py.Object_CallMethod(view, "release", NULL);
    if (result) py.DecRef(result);
    else py.Err_Clear();
    py.DecRef(view);
}

static int call_python_process(UpscaleData *d, int n, const VSFrame *src, VSFrame *dst, const VSAPI *vsapi,
                               char *error, size_t error_size) {
    const int width = vsapi->getFrameWidth(src, 0);
    const int height = vsapi->getFrameHeight(src, 0);
    const ptrdiff_t src_stride = vsapi->getStride(src, 0);
    const ptrdiff_t dst_stride = vsapi->getStride(dst, 0);
    const uint8_t *src_planes[3];
    uint8_t *dst_planes[3];
    for (int p = 0; p < 3; p++) {
        src_planes[p] = vsapi->getReadPtr(src, p);
        dst_planes[p] = vsapi->getWritePtr(dst, p);
        if (!src_planes[p] || !dst_planes[p] || vsapi->getStride(src, p) != src_stride ||
            vsapi->getStride(dst, p) != dst_stride) {
            snprintf(error, error_size, "vapsr.Upscale: frame %d is not a CPU frame with readable planes "
                     "(GPU-resident input is not supported)", n);
            return 0;
        }
    }

    PyGILState_STATE state;
    if (!enter_python(&state)) {
        snprintf(error, error_size, "vapsr.Upscale: the Python interpreter is shutting down; frame %d not computed", n);
        return 0;
    }
    int ok = 0;
    PyObject *views[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
    for (int p = 0; p < 3; p++) {
        views[p] = py.MemoryView_FromMemory((char *)src_planes[p], (Py_ssize_t)(src_stride * height), PYBUF_READ);
        views[3 + p] = py.MemoryView_FromMemory((char *)dst_planes[p],
                                                (Py_ssize_t)(dst_stride * height * d->scale), PYBUF_WRITE);
    }
    int views_ok = 1;
    for (int i = 0; i < 6; i++) views_ok &= views[i] != NULL;
    if (!views_ok) {
        take_python_error(error, error_size, "cannot wrap the frame planes");
    } else {
        PyObject *result = py.Object_CallMethod(d->filter, "process", "iiiOOOnOOOn", n, width, height,
                                                views[0], views[1], views[2], (Py_ssize_t)src_stride,
                                                views[3], views[4], views[5], (Py_ssize_t)dst_stride);
        if (!result) {
            take_python_error(error, error_size, "frame callback failed");
        } else if (result == py.None) {
            ok = 1;
        } else if (!copy_python_str(result, error, error_size)) {
            snprintf(error, error_size, "vapsr.Upscale: frame callback returned neither None nor a message");
        }
        if (result) py.DecRef(result);
    }
    for (int i = 0; i < 6; i++) release_memoryview(views[i]);
    leave_python(state);
    return ok;
}

static const VSFrame *VS_CC upscale_get_frame(int n, int activation_reason, void *instance_data, void **frame_data,
                                              VSFrameContext *frame_ctx, VSCore *core, const VSAPI *vsapi) {
    (void)frame_data;
    UpscaleData *d = (UpscaleData *)instance_data;
    if (activation_reason == arInitial) {
        vsapi->requestFrameFilter(n, d->node, frame_ctx);
        return NULL;
    }
    if (activation_reason != arAllFramesReady) return NULL;

    const VSFrame *src = vsapi->getFrameFilter(n, d->node, frame_ctx);
    const VSVideoFormat *format = vsapi->getVideoFrameFormat(src);
    /* propSrc = src: every frame property passes through unchanged. */
    VSFrame *dst = vsapi->newVideoFrame(format, vsapi->getFrameWidth(src, 0) * d->scale,
                                        vsapi->getFrameHeight(src, 0) * d->scale, src, core);
    char error[ERROR_SIZE];
    int ok = call_python_process(d, n, src, dst, vsapi, error, sizeof error);
    vsapi->freeFrame(src);
    if (!ok) {
        vsapi->freeFrame(dst);
        vsapi->setFilterError(error, frame_ctx);
        return NULL;
    }
    return dst;
}

static void VS_CC upscale_free(void *instance_data, VSCore *core, const VSAPI *vsapi) {
    (void)core;
    UpscaleData *d = (UpscaleData *)instance_data;
    PyGILState_STATE state;
    /* Once the interpreter is going away its objects go with it: leaking the
     * reference is the only safe choice then. */
    if (d->filter && enter_python(&state)) {
        PyObject *result = py.Object_CallMethod(d->filter, "close", NULL);
        if (result) py.DecRef(result);
        else py.Err_Clear();
        py.DecRef(d->filter);
        leave_python(state);
    }
    vsapi->freeNode(d->node);
    free(d);
}

/* Arguments that were not given reach Python as None. */
static PyObject *optional_int(const VSMap *in, const char *key, const VSAPI *vsapi, PyObject **owned,
                              PyObject *(*from_long)(long)) {
    int err = 0;
    int64_t value = vsapi->mapGetInt(in, key, 0, &err);
    if (err) return py.None;
    *owned = from_long((long)value);
    return *owned;
}

static void VS_CC upscale_create(const VSMap *in, VSMap *out, void *user_data, VSCore *core, const VSAPI *vsapi) {
    (void)user_data;
    char error[ERROR_SIZE];
    resolve_python_api_once();
    if (!py.loaded || !python_usable()) {
        vsapi->mapSetError(out, "vapsr.Upscale: needs a Python host with the vapsr-video package (vspipe, a .vpy "
                                "script, or `import vapoursynth` in Python); this process has no running Python "
                                "interpreter");
        return;
    }
    PyObject *(*from_long)(long) = NULL;
    *(void **)(&from_long) = find_symbol("PyLong_FromLong");
    if (!from_long) {
        vsapi->mapSetError(out, "vapsr.Upscale: the Python C API in this process lacks PyLong_FromLong");
        return;
    }

    VSNode *node = vsapi->mapGetNode(in, "clip", 0, NULL);
    const VSVideoInfo *vi = vsapi->getVideoInfo(node);
    char format_name[32] = "";
    if (vi->format.colorFamily != cfUndefined) vsapi->getVideoFormatName(&vi->format, format_name);

    int err = 0;
    const char *model = vsapi->mapGetData(in, "model", 0, &err);
    if (err) model = NULL;
    const char *weights = vsapi->mapGetData(in, "weights", 0, &err);
    if (err) weights = NULL;
    const char *device = vsapi->mapGetData(in, "device", 0, &err);
    if (err) device = NULL;
    const char *engine = vsapi->mapGetData(in, "engine", 0, &err);
    if (err) engine = NULL;

    PyGILState_STATE state;
    if (!enter_python(&state)) {
        vsapi->freeNode(node);
        vsapi->mapSetError(out, "vapsr.Upscale: the Python interpreter is shutting down");
        return;
    }
    PyObject *owned[5] = {NULL, NULL, NULL, NULL, NULL};
    PyObject *scale = optional_int(in, "scale", vsapi, &owned[0], from_long);
    PyObject *num_streams = optional_int(in, "num_streams", vsapi, &owned[1], from_long);
    PyObject *tilesize = optional_int(in, "tilesize", vsapi, &owned[2], from_long);
    PyObject *overlap = optional_int(in, "overlap", vsapi, &owned[3], from_long);
    PyObject *fp16 = optional_int(in, "fp16", vsapi, &owned[4], from_long);

    UpscaleData *d = NULL;
    int created = 0;
    PyObject *module = py.Import_ImportModule(BRIDGE_MODULE);
    if (!module) {
        take_python_error(error, sizeof error, "cannot import " BRIDGE_MODULE);
    } else {
        /* The shutdown hook's address travels as an integer for ctypes. */
        PyObject *result = py.Object_CallMethod(
            module, "create_filter", "iiiiisiOzzzOOOOzn", vi->width, vi->height, vi->format.colorFamily,
            vi->format.sampleType, vi->format.bitsPerSample, format_name, vi->numFrames, scale, model, weights,
            device, num_streams, tilesize, overlap, fp16, engine, (Py_ssize_t)(intptr_t)&vapsr_shutdown);
        if (!result) {
            take_python_error(error, sizeof error, "cannot create the filter");
        } else if (py.Tuple_Size(result) != 3) {
            py.Err_Clear();
            snprintf(error, sizeof error, "vapsr.Upscale: " BRIDGE_MODULE ".create_filter returned no 3-tuple");
        } else {
            PyObject *filter = py.Tuple_GetItem(result, 0);
            PyObject *message = py.Tuple_GetItem(result, 2);
            if (message != py.None) {
                if (!copy_python_str(message, error, sizeof error))
                    snprintf(error, sizeof error, "vapsr.Upscale: cannot create the filter");
            } else {
                d = (UpscaleData *)calloc(1, sizeof *d);
                d->node = node;
                d->scale = (int)py.Long_AsLong(py.Tuple_GetItem(result, 1));
                d->filter = filter;
                py.IncRef(filter);
                created = 1;
            }
        }
        if (result) py.DecRef(result);
        py.DecRef(module);
    }
    for (int i = 0; i < 5; i++)
        if (owned[i]) py.DecRef(owned[i]);
    leave_python(state);

    if (!created) {
        vsapi->freeNode(node);
        vsapi->mapSetError(out, error);
        return;
    }
    VSVideoInfo out_vi = *vi;
    out_vi.width = vi->width * d->scale;
    out_vi.height = vi->height * d->scale;
    VSFilterDependency deps[] = {{d->node, rpStrictSpatial}};
    /* fmParallel: several frames may be inside Python at once; the Python side
     * bounds how many run (num_streams), each on its own CUDA stream. */
    vsapi->createVideoFilter(out, "Upscale", &out_vi, upscale_get_frame, upscale_free, fmParallel, deps, 1, d, core);
}

VS_EXTERNAL_API(void) VapourSynthPluginInit2(VSPlugin *plugin, const VSPLUGINAPI *vspapi) {
    vspapi->configPlugin("io.github.vapsr-video.vapsr", "vapsr", "VapSR super-resolution (vapsr-video)",
                         VS_MAKE_VERSION(1, 0), VAPOURSYNTH_API_VERSION, 0, plugin);
    vspapi->registerFunction("Upscale",
                             "clip:vnode;scale:int:opt;model:data:opt;weights:data:opt;device:data:opt;"
                             "num_streams:int:opt;tilesize:int:opt;overlap:int:opt;fp16:int:opt;engine:data:opt;",
                             "clip:vnode;", upscale_create, NULL, plugin);
}
