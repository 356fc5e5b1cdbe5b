#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char g_msg[2048];

static const char *const STATUS_NAMES[] = {
    "ok",
    "invalid argument",
    "I/O error",
    "malformed input",
    "unsupported",
    "missing",
    "shape or dtype mismatch",
    "out of memory",
    "cancelled",
    "context full",
    "device error",
    "template error",
    "internal error",
};

const char *lm_status_str(lm_status s) {
    if (s > 0 || s <= LM_ERR_COUNT_)
        return "unknown status";
    return STATUS_NAMES[-s];
}

const char *lm_last_error(void) { return g_msg; }

void lm_err_clear(void) { g_msg[0] = 0; }

lm_status lm_err(lm_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    return code;
}

lm_status lm_err_prefix(lm_status code, const char *fmt, ...) {
    char prefix[512], old[sizeof g_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_msg, sizeof old);
    if (snprintf(g_msg, sizeof g_msg, "%s: %s", prefix, old) < 0) /* truncation is fine */
        g_msg[0] = 0;
    return code;
}
