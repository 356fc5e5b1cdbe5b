/* Stop strings: text is held back while it may begin a stop string and never printed. */
#include "generate/stop.h"
#include "test_util.h"

static const char *push(lm_stop *s, const char *t, int *matched) {
    const char *e;
    size_t n;
    CHECK(lm_stop_push(s, t, strlen(t), &e, &n, matched) == LM_OK);
    CHECK(strlen(e) == n);
    return e;
}

int main(void) {
    const char *stops[2] = {"END", "\n\n"};
    lm_stop s;
    lm_stop_init(&s, stops, 2);
    int m;
    CHECK(strcmp(push(&s, "Hello E", &m), "Hello ") == 0 && !m);
    CHECK(strcmp(push(&s, "N", &m), "") == 0 && !m);     /* "EN" still held */
    CHECK(strcmp(push(&s, "X", &m), "ENX") == 0 && !m);  /* ruled out: released */
    CHECK(strcmp(push(&s, "abc\n", &m), "abc") == 0 && !m);
    CHECK(strcmp(push(&s, "x", &m), "\nx") == 0 && !m);
    CHECK(strcmp(push(&s, "tail EN", &m), "tail ") == 0 && !m);
    CHECK(strcmp(push(&s, "D and more", &m), "") == 0 && m); /* "END": stop, nothing after */
    lm_stop_free(&s);

    /* a stop string inside one segment; text before it is released */
    lm_stop_init(&s, stops, 2);
    CHECK(strcmp(push(&s, "one\n\ntwo", &m), "one") == 0 && m);
    lm_stop_free(&s);

    /* overlapping prefixes: "ab" + "abc" holds "abc"; "d" completes "abcd" */
    const char *st2[1] = {"abcd"};
    lm_stop_init(&s, st2, 1);
    CHECK(strcmp(push(&s, "ab", &m), "") == 0 && !m);
    CHECK(strcmp(push(&s, "abc", &m), "ab") == 0 && !m);
    CHECK(strcmp(push(&s, "d", &m), "") == 0 && m);
    lm_stop_free(&s);

    /* flush releases what was held at the end of the stream */
    lm_stop_init(&s, stops, 2);
    CHECK(strcmp(push(&s, "xyz EN", &m), "xyz ") == 0 && !m);
    const char *e;
    size_t n;
    CHECK(lm_stop_flush(&s, &e, &n) == LM_OK && n == 2 && memcmp(e, "EN", 2) == 0);
    lm_stop_free(&s);

    /* multi-byte: a stop string "é!" (C3 A9 21) held across a character boundary */
    const char *st3[1] = {"\xC3\xA9!"};
    lm_stop_init(&s, st3, 1);
    CHECK(strcmp(push(&s, "caf\xC3\xA9", &m), "caf") == 0 && !m);
    CHECK(strcmp(push(&s, "s", &m), "\xC3\xA9s") == 0 && !m);
    lm_stop_free(&s);

    /* no stop strings: everything passes through */
    lm_stop_init(&s, NULL, 0);
    CHECK(strcmp(push(&s, "plain", &m), "plain") == 0 && !m);
    lm_stop_free(&s);
    return test_done("stop");
}
