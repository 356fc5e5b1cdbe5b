/* lmcore chat: an interactive REPL over the chat template (or raw text for a base model). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "gen_common.h"

static const char CHAT_USAGE[] =
    "usage: lmcore chat [-m DIR] [options]\n"
    "  An interactive conversation: type a message and press Enter. /reset forgets the history,\n"
    "  /quit (or end of input) exits, Ctrl-C stops the current answer. With a chat template the\n"
    "  history is rendered as messages; a base model without one sees the turns as raw text.\n"
    "  Takes the sampling options of `lmcore generate` (see lmcore generate --help), e.g.\n"
    "  --system-prompt, -n (256 per answer), --temp, --top-p, --top-k, --min-p, --seed.\n";

/* The one process-wide flag the SIGINT handler may touch (signal handlers have no user data). */
static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig) {
    (void)sig;
    g_interrupted = 1;
}

typedef struct chat_turns {
    lm_chat_message *m;
    char **owned; /* [n] contents we allocated */
    int n, cap;
} chat_turns;

static int turns_add(chat_turns *t, const char *role, const char *content, size_t len) {
    if (t->n == t->cap) {
        int nc = t->cap ? t->cap * 2 : 16;
        lm_chat_message *nm = realloc(t->m, (size_t)nc * sizeof *nm);
        if (!nm)
            return 0;
        t->m = nm;
        char **no = realloc(t->owned, (size_t)nc * sizeof *no);
        if (!no)
            return 0;
        t->owned = no;
        t->cap = nc;
    }
    char *c = malloc(len + 1);
    if (!c)
        return 0;
    memcpy(c, content, len);
    c[len] = 0;
    t->owned[t->n] = c;
    t->m[t->n].role = role;
    t->m[t->n].content = c;
    t->n++;
    return 1;
}

static void turns_truncate(chat_turns *t, int n) {
    while (t->n > n)
        free(t->owned[--t->n]);
}

typedef struct answer {
    char *p;
    size_t n, cap;
    int oom;
} answer;

static int stream_answer(void *user, const char *text, size_t len, int32_t token, float logprob) {
    (void)token;
    (void)logprob;
    answer *a = user;
    if (len) {
        fwrite(text, 1, len, stdout);
        fflush(stdout);
        if (a->n + len + 1 > a->cap) {
            size_t nc = (a->n + len + 1) * 2;
            char *np = realloc(a->p, nc);
            if (!np)
                a->oom = 1;
            else
                a->p = np, a->cap = nc;
        }
        if (!a->oom) {
            memcpy(a->p + a->n, text, len);
            a->n += len;
        }
    }
    return g_interrupted != 0;
}

int cmd_chat(int argc, char **argv) {
    gen_opts o;
    int r = gen_parse("chat", argc, argv, CHAT_USAGE, &o);
    if (r)
        return r == 2 ? 0 : 1;
    lm_llm *llm = NULL;
    lm_session *sess = NULL;
    if (gen_load("chat", &o, &llm))
        return 1;
    if (lm_session_new(llm, &o.sess, &sess) != LM_OK) {
        lm_llm_free(llm);
        return cli_fail("chat", NULL);
    }
    int use_template = !o.ignore_chat_template && lm_llm_chat_template(llm);
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old); /* no SA_RESTART: Ctrl-C at the prompt interrupts the read */
    int tty = isatty(0);
    chat_turns t = {0};
    answer ans = {0};
    gen_progress prog = {.enabled = isatty(2)};
    int rc = 0, base = 0;
    if (use_template && o.system_prompt) {
        turns_add(&t, "system", o.system_prompt, strlen(o.system_prompt));
        base = 1;
    }
    if (tty)
        fprintf(stderr, "lmcore chat: /reset forgets the conversation, /quit exits, Ctrl-C stops an answer.\n");
    char *line = NULL;
    size_t line_cap = 0;
    for (;;) {
        if (tty) {
            fputs(">> ", stdout);
            fflush(stdout);
        }
        errno = 0;
        g_interrupted = 0;
        ssize_t n = getline(&line, &line_cap, stdin);
        if (n < 0) {
            if (errno == EINTR && g_interrupted) {
                clearerr(stdin);
                fputs("\n(/quit exits)\n", stdout);
                continue;
            }
            break;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = 0;
        if (n == 0)
            continue;
        if (strcmp(line, "/quit") == 0 || strcmp(line, "/exit") == 0)
            break;
        if (strcmp(line, "/reset") == 0) {
            turns_truncate(&t, base);
            lm_session_reset(sess);
            fputs("(conversation reset)\n", stdout);
            continue;
        }
        int before = t.n;
        /* raw text (no template): turns are concatenated, each new user turn on a new line */
        int ok;
        if (!use_template && t.n > 0) {
            char *nl = malloc((size_t)n + 2);
            ok = nl != NULL;
            if (nl) {
                nl[0] = '\n';
                memcpy(nl + 1, line, (size_t)n + 1);
                ok = turns_add(&t, "user", nl, (size_t)n + 1);
                free(nl);
            }
        } else {
            ok = turns_add(&t, "user", line, (size_t)n);
        }
        if (!ok) {
            rc = cli_fail("chat", "out of memory");
            break;
        }
        int32_t *ids = NULL;
        int n_ids = 0;
        if (lm_llm_encode_chat(llm, t.m, t.n, use_template, o.chat_template_config, &ids, &n_ids) != LM_OK) {
            fprintf(stderr, "lmcore chat: %s\n", lm_last_error());
            turns_truncate(&t, before);
            continue;
        }
        ans.n = 0;
        ans.oom = 0;
        o.gen.on_token = stream_answer;
        o.gen.user = &ans;
        o.gen.on_progress = gen_progress_cb;
        o.gen.progress_user = &prog;
        lm_gen_result res = {.size = sizeof res};
        lm_status st = lm_session_generate(sess, ids, n_ids, &o.gen, &res);
        lm_free_tokens(ids);
        fputc('\n', stdout);
        if (st != LM_OK) {
            fprintf(stderr, "lmcore chat: %s%s\n", lm_last_error(),
                    st == LM_ERR_CONTEXT ? " (/reset starts a new conversation)" : "");
            turns_truncate(&t, before);
            continue;
        }
        if (res.finish_reason == LM_FINISH_CANCELLED)
            fputs("(stopped)\n", stdout);
        if (o.verbose)
            gen_print_stats(&res);
        if (!turns_add(&t, "assistant", ans.p ? ans.p : "", ans.n)) {
            rc = cli_fail("chat", "out of memory");
            break;
        }
        fflush(stdout);
    }
    sigaction(SIGINT, &old, NULL);
    free(line);
    free(ans.p);
    turns_truncate(&t, 0);
    free(t.m);
    free(t.owned);
    lm_session_free(sess);
    lm_llm_free(llm);
    return rc;
}
