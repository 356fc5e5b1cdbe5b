/* Tiny test harness shared by all C tests: CHECK macros, fixture paths, a summary line.
 * A test program returns test_done() from main: 0 when every check passed. */
#ifndef LM_TEST_UTIL_H
#define LM_TEST_UTIL_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_pass, t_fail;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (cond) {                                                            \
            t_pass++;                                                          \
        } else {                                                               \
            t_fail++;                                                          \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                      \
    } while (0)

#define CHECKF(cond, ...)                                                      \
    do {                                                                       \
        if (cond) {                                                            \
            t_pass++;                                                          \
        } else {                                                               \
            t_fail++;                                                          \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
        }                                                                      \
    } while (0)

/* Directory holding the shared fixtures (LMCORE_FIXTURES or ../shared/fixtures). */
static inline const char *t_fixtures(void) {
    const char *e = getenv("LMCORE_FIXTURES");
    return e && *e ? e : "../shared/fixtures";
}

/* Path of a fixture file or directory: t_fixture_path(buf, "models/llama"). */
static inline const char *t_fixture_path(char *buf, size_t cap, const char *rel) {
    snprintf(buf, cap, "%s/%s", t_fixtures(), rel);
    return buf;
}

static inline int test_done(const char *name) {
    printf("%s: %d passed, %d failed\n", name, t_pass, t_fail);
    return t_fail ? 1 : 0;
}

#endif
