/* Internal error reporting: every fallible function returns lm_status and records a
 * message with lm_err(). Messages live in a thread-local buffer (see lm_last_error). */
#ifndef LM_CORE_STATUS_H
#define LM_CORE_STATUS_H
#include "lmcore.h"

#if defined(__GNUC__)
#define LM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LM_PRINTF(a, b)
#endif

/* Record a message and return `code`: `return lm_err(LM_ERR_IO, "%s: cannot open", path);` */
lm_status lm_err(lm_status code, const char *fmt, ...) LM_PRINTF(2, 3);
/* Prefix the current message with "<prefix>: " (for adding the file name on the way up). */
lm_status lm_err_prefix(lm_status code, const char *fmt, ...) LM_PRINTF(2, 3);
void lm_err_clear(void);

#define LM_TRY(expr)                    \
    do {                                \
        lm_status lm_try_s_ = (expr);   \
        if (lm_try_s_ != LM_OK)         \
            return lm_try_s_;           \
    } while (0)

#endif
