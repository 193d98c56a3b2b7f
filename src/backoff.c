/* backoff.c -- exponential backoff with cap and jitter. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "backoff.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>

long long backoff_delay_ms(const struct backoff_policy *p, int attempt, double u)
{
	double d = (double)p->base_ms;

	if (attempt < 1)
		attempt = 1;
	/* Grow step by step and stop at the cap: no pow() overflow to inf. */
	for (int i = 1; i < attempt && d < (double)p->cap_ms; i++)
		d *= p->factor;
	if (d > (double)p->cap_ms)
		d = (double)p->cap_ms;
	if (u < 0.0)
		u = 0.0;
	if (u >= 1.0)
		u = 0.999999;
	d *= 1.0 + p->jitter * (2.0 * u - 1.0);
	if (d < 0.0)
		d = 0.0;
	return llround(d);
}

double backoff_random(void)
{
	static _Thread_local unsigned short seed[3];
	static _Thread_local int seeded;

	if (!seeded) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		uintptr_t self = (uintptr_t)pthread_self();
		seed[0] = (unsigned short)(ts.tv_nsec ^ (long)self);
		seed[1] = (unsigned short)(ts.tv_sec ^ (long)(self >> 16));
		seed[2] = (unsigned short)((ts.tv_nsec >> 16) ^ (long)getpid());
		seeded = 1;
	}
	return erand48(seed);
}

int backoff_reconnect_ms(int prev_ms, int first_ms, int cap_ms)
{
	if (prev_ms <= 0)
		return first_ms < cap_ms ? first_ms : cap_ms;
	return prev_ms > cap_ms / 2 ? cap_ms : prev_ms * 2;
}
