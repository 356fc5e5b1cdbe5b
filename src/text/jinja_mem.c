/* Arena and output buffer for the Jinja engine (see jinja.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja.h"

struct jj_chunk {
    jj_chunk *next;
    size_t cap, used;
    max_align_t data[]; /* cap bytes */
};

#define JJ_CHUNK_MIN ((size_t)64 << 10)

void *jj_alloc(jj_arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0)
        n = 16;
    if (a->limit && (n > a->limit || a->used > a->limit - n))
        return NULL;
    jj_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > JJ_CHUNK_MIN / 2 ? n : JJ_CHUNK_MIN;
        jj_chunk *nc = malloc(sizeof *nc + cap);
        if (!nc)
            return NULL;
        nc->cap = cap;
        nc->used = 0;
        if (c && cap != JJ_CHUNK_MIN) { /* a big one-off block: keep the current chunk on top */
            nc->next = c->next;
            c->next = nc;
        } else {
            nc->next = c;
            a->head = nc;
        }
        c = nc;
    }
    char *p = (char *)c->data + c->used;
    c->used += n;
    a->used += n;
    memset(p, 0, n);
    return p;
}

void jj_arena_free(jj_arena *a) {
    jj_chunk *c = a->head;
    while (c) {
        jj_chunk *nx = c->next;
        free(c);
        c = nx;
    }
    a->head = NULL;
    a->used = 0;
}

char *jj_strndup(jj_arena *a, const char *s, size_t n) {
    if (n == SIZE_MAX)
        return NULL;
    char *d = jj_alloc(a, n + 1);
    if (d && n)
        memcpy(d, s, n);
    return d;
}

static int buf_reserve(jj_buf *b, size_t extra) {
    if (b->oom)
        return 0;
    if (extra > SIZE_MAX / 2 - b->n || (b->limit && b->n + extra > b->limit)) {
        b->oom = 1;
        return 0;
    }
    size_t need = b->n + extra + 1;
    if (need <= b->cap)
        return 1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np) {
        b->oom = 1;
        return 0;
    }
    b->p = np;
    b->cap = cap;
    return 1;
}

void jj_buf_put(jj_buf *b, const char *s, size_t n) {
    if (!buf_reserve(b, n))
        return;
    if (n)
        memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void jj_buf_puts(jj_buf *b, const char *s) { jj_buf_put(b, s, strlen(s)); }
void jj_buf_putc(jj_buf *b, char c) { jj_buf_put(b, &c, 1); }

void jj_buf_printf(jj_buf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof tmp) {
        jj_buf_put(b, tmp, (size_t)n);
        return;
    }
    if (!buf_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)n;
}

void jj_buf_free(jj_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}
