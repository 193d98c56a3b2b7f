/*
 * nats_stream.c -- a small libnats program for the NATS tests and the bench:
 *
 *   nats_stream URL create STREAM SUBJECT...   a file-storage stream, 2 min dedupe window
 *   nats_stream URL wait STREAM N SECONDS      until the stream holds N messages
 *   nats_stream URL dump STREAM                every message, one JSON object a line:
 *                                              {"seq", "subject", "headers": {...}, "data"}
 *   nats_stream URL publish SUBJECT N          the bench's baseline: N envelopes like
 *                                              pgeventd's, async publish with acks, each
 *                                              with a Nats-Msg-Id; prints the seconds taken
 *
 * NATS_STREAM_CA=<file>: connect with TLS, trusting that CA.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <nats/nats.h>

static int fail(const char *what, natsStatus s, jsErrCode code)
{
	fprintf(stderr, "nats_stream: %s: %s (jetstream error %d)\n", what, natsStatus_GetText(s),
	        (int)code);
	return 1;
}

static int create_stream(jsCtx *js, const char *name, const char **subjects, int n)
{
	jsStreamConfig cfg;
	jsStreamInfo *si = NULL;
	jsErrCode code = 0;
	natsStatus s;

	jsStreamConfig_Init(&cfg);
	cfg.Name = name;
	cfg.Subjects = subjects;
	cfg.SubjectsLen = n;
	cfg.Storage = js_FileStorage;
	cfg.Duplicates = (int64_t)120 * 1000 * 1000 * 1000; /* ns */
	s = js_AddStream(&si, js, &cfg, NULL, &code);
	jsStreamInfo_Destroy(si);
	return s == NATS_OK ? 0 : fail("create", s, code);
}

static int stream_count(jsCtx *js, const char *name, uint64_t *n)
{
	jsStreamInfo *si = NULL;
	jsErrCode code = 0;
	natsStatus s = js_GetStreamInfo(&si, js, name, NULL, &code);

	if (s != NATS_OK)
		return fail("stream info", s, code);
	*n = si->State.Msgs;
	jsStreamInfo_Destroy(si);
	return 0;
}

static int wait_stream(jsCtx *js, const char *name, uint64_t want, int seconds)
{
	uint64_t n = 0;

	for (int i = 0; i < seconds * 10; i++) {
		if (stream_count(js, name, &n) == 0 && n >= want) {
			printf("%" PRIu64 "\n", n);
			return 0;
		}
		nanosleep(&(struct timespec){ 0, 100 * 1000 * 1000 }, NULL);
	}
	printf("%" PRIu64 "\n", n);
	return 1;
}

static int dump_stream(jsCtx *js, const char *name)
{
	uint64_t last = 0;
	jsStreamInfo *si = NULL;
	jsErrCode code = 0;
	natsStatus s = js_GetStreamInfo(&si, js, name, NULL, &code);

	if (s != NATS_OK)
		return fail("stream info", s, code);
	last = si->State.LastSeq;
	jsStreamInfo_Destroy(si);
	for (uint64_t seq = 1; seq <= last; seq++) {
		natsMsg *m = NULL;
		const char **keys = NULL;
		int nkeys = 0;
		json_t *o, *h;
		char *line;

		s = js_GetMsg(&m, js, name, seq, NULL, &code);
		if (s != NATS_OK)
			return fail("get", s, code);
		h = json_object();
		if (natsMsgHeader_Keys(m, &keys, &nkeys) == NATS_OK) {
			for (int i = 0; i < nkeys; i++) {
				const char *v = NULL;

				if (natsMsgHeader_Get(m, keys[i], &v) == NATS_OK)
					json_object_set_new(h, keys[i], json_string(v));
			}
			free((void *)keys);
		}
		o = json_pack("{s:I, s:s, s:o, s:s%}", "seq", (json_int_t)seq, "subject",
		              natsMsg_GetSubject(m), "headers", h, "data", natsMsg_GetData(m),
		              (size_t)natsMsg_GetDataLength(m));
		line = json_dumps(o, JSON_COMPACT);
		puts(line);
		free(line);
		json_decref(o);
		natsMsg_Destroy(m);
	}
	return 0;
}

static int publish_baseline(jsCtx *js, const char *subject, int n)
{
	struct timespec t0, t1;
	jsPubOptions po;
	natsStatus s;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < n; i++) {
		natsMsg *m = NULL;
		char body[256], id[64];

		snprintf(id, sizeof(id), "baseline-%d-%d", (int)getpid(), i);
		snprintf(
		    body, sizeof(body),
		    "{\"id\": \"%s\", \"type\": \"bench.event\", \"timestamp\": "
		    "\"2026-01-01T00:00:00.000000Z\", \"aggregate\": null, \"data\": {\"n\": %d}}",
		    id, i);
		s = natsMsg_Create(&m, subject, NULL, body, (int)strlen(body));
		if (s == NATS_OK)
			s = natsMsgHeader_Set(m, "Nats-Msg-Id", id);
		if (s == NATS_OK)
			s = natsMsgHeader_Set(m, "ce-id", id);
		if (s == NATS_OK)
			s = natsMsgHeader_Set(m, "ce-type", "bench.event");
		if (s == NATS_OK)
			s = js_PublishMsgAsync(js, &m, NULL);
		natsMsg_Destroy(m);
		if (s != NATS_OK)
			return fail("publish", s, 0);
	}
	jsPubOptions_Init(&po);
	po.MaxWait = 120000;
	s = js_PublishAsyncComplete(js, &po);
	if (s != NATS_OK)
		return fail("complete", s, 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%.3f\n", (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	return 0;
}

int main(int argc, char **argv)
{
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	jsOptions jo;
	natsStatus s;
	int rc = 2;

	if (argc < 4) {
		fprintf(stderr, "usage: nats_stream URL create|wait|dump|publish ...\n");
		return 2;
	}
	natsOptions *o = NULL;

	s = natsOptions_Create(&o);
	if (s == NATS_OK)
		s = natsOptions_SetURL(o, argv[1]);
	if (s == NATS_OK && getenv("NATS_STREAM_CA"))
		s = natsOptions_SetSecure(o, true);
	if (s == NATS_OK && getenv("NATS_STREAM_CA"))
		s = natsOptions_LoadCATrustedCertificates(o, getenv("NATS_STREAM_CA"));
	if (s == NATS_OK)
		s = natsConnection_Connect(&nc, o);
	natsOptions_Destroy(o);
	if (s != NATS_OK)
		return fail("connect", s, 0);
	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = 4096;
	s = natsConnection_JetStream(&js, nc, &jo);
	if (s != NATS_OK) {
		rc = fail("jetstream", s, 0);
		goto out;
	}
	if (strcmp(argv[2], "create") == 0 && argc >= 5)
		rc = create_stream(js, argv[3], (const char **)argv + 4, argc - 4);
	else if (strcmp(argv[2], "wait") == 0 && argc == 6)
		rc = wait_stream(js, argv[3], strtoull(argv[4], NULL, 10), atoi(argv[5]));
	else if (strcmp(argv[2], "dump") == 0)
		rc = dump_stream(js, argv[3]);
	else if (strcmp(argv[2], "publish") == 0 && argc == 5)
		rc = publish_baseline(js, argv[3], atoi(argv[4]));
	else
		fprintf(stderr, "nats_stream: bad arguments\n");
out:
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	/* after TLS, libnats's cleanup at exit crashes OpenSSL's (nats-io/nats.c#904) */
	if (!getenv("NATS_STREAM_CA"))
		nats_Close();
	return rc;
}
