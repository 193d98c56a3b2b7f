/*
 * backoff.h -- retry delays: exponential with a cap and symmetric jitter.
 * Pure functions; the random draw is the caller's, so tests can fix it.
 */
#ifndef PGEVENTD_BACKOFF_H
#define PGEVENTD_BACKOFF_H

struct backoff_policy {
	long long base_ms; /* delay after the first failed attempt */
	double factor;     /* growth per further attempt, >= 1 */
	long long cap_ms;  /* upper bound before jitter */
	double jitter;     /* 0.1 = +-10 % */
};

/*
 * Delay before the attempt after failed attempt number `attempt` (1-based):
 * min(cap, base * factor^(attempt-1)), scaled by 1 + jitter * (2u - 1)
 * where u in [0, 1) is the caller's random draw. Never negative, never
 * overflows, whatever `attempt` is.
 */
long long backoff_delay_ms(const struct backoff_policy *p, int attempt, double u);

/* A uniform draw in [0, 1) from a thread-local generator. */
double backoff_random(void);

/* The wait before the next try to reconnect: `first_ms` after the first
 * failure (prev_ms <= 0), then doubling up to `cap_ms`. */
int backoff_reconnect_ms(int prev_ms, int first_ms, int cap_ms);

#endif
