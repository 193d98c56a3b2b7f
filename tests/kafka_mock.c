/*
 * kafka_mock.c -- librdkafka's built-in mock cluster for the Kafka tests and
 * the bench, and a consumer reading it back:
 *
 *   kafka_mock BOOTSTRAP_FILE TOPIC PARTITIONS COUNT SECONDS
 *
 * Starts a 3-broker mock cluster (test.mock.num.brokers), creates TOPIC,
 * writes the cluster's bootstrap.servers to BOOTSTRAP_FILE (for pgeventd's
 * kafka:// url), then consumes every partition from the start until COUNT
 * messages came or SECONDS passed, printing each as one JSON line:
 *   {"partition", "offset", "key", "headers": {...}, "value"}
 * and on stderr the seconds from the first message to the COUNT-th.
 * Exits 0 when COUNT came. The cluster lives as long as this program.
 * KAFKA_MOCK_MISSING=<topic> makes the cluster answer that topic's
 * metadata with "unknown topic" (the mock creates any topic it is asked
 * for, where a real cluster may not).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static rd_kafka_t *make(rd_kafka_type_t type, const char *const *props)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char err[256];
	rd_kafka_t *rk;

	for (int i = 0; props[i]; i += 2)
		if (rd_kafka_conf_set(conf, props[i], props[i + 1], err, sizeof(err)) !=
		    RD_KAFKA_CONF_OK) {
			fprintf(stderr, "kafka_mock: %s\n", err);
			exit(2);
		}
	rk = rd_kafka_new(type, conf, err, sizeof(err));
	if (!rk) {
		fprintf(stderr, "kafka_mock: %s\n", err);
		exit(2);
	}
	return rk;
}

static void print_message(const rd_kafka_message_t *m)
{
	rd_kafka_headers_t *hdrs = NULL;
	json_t *h = json_object(), *o;
	const char *name;
	const void *val;
	size_t len;
	char *line;

	if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR)
		for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &len) ==
		                   RD_KAFKA_RESP_ERR_NO_ERROR;
		     i++)
			json_object_set_new(h, name, json_stringn(val ? val : "", len));
	o = json_pack("{s:i, s:I, s:o, s:o, s:s%}", "partition", (int)m->partition, "offset",
	              (json_int_t)m->offset, "key",
	              m->key ? json_stringn(m->key, m->key_len) : json_null(), "headers", h,
	              "value", m->payload ? (const char *)m->payload : "", m->len);
	line = json_dumps(o, JSON_COMPACT);
	puts(line);
	free(line);
	json_decref(o);
}

int main(int argc, char **argv)
{
	static const char *const mock_props[] = { "test.mock.num.brokers", "3", NULL };
	rd_kafka_t *owner, *consumer;
	rd_kafka_mock_cluster_t *mc;
	rd_kafka_topic_partition_list_t *parts;
	const char *bootstraps;
	int partitions, count, seconds, got = 0;
	double start, first = 0, deadline;
	FILE *f;

	if (argc != 6) {
		fprintf(stderr,
		        "usage: kafka_mock BOOTSTRAP_FILE TOPIC PARTITIONS COUNT SECONDS\n");
		return 2;
	}
	partitions = atoi(argv[3]);
	count = atoi(argv[4]);
	seconds = atoi(argv[5]);
	owner = make(RD_KAFKA_PRODUCER, mock_props);
	mc = rd_kafka_handle_mock_cluster(owner);
	if (!mc || rd_kafka_mock_topic_create(mc, argv[2], partitions, 1)) {
		fprintf(stderr, "kafka_mock: no mock cluster or topic\n");
		return 2;
	}
	if (getenv("KAFKA_MOCK_MISSING"))
		rd_kafka_mock_topic_set_error(mc, getenv("KAFKA_MOCK_MISSING"),
		                              RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
	bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
	const char *const consumer_props[] = {
		"bootstrap.servers",  bootstraps, "group.id", "kafka_mock",
		"enable.auto.commit", "false",    NULL
	};
	consumer = make(RD_KAFKA_CONSUMER, consumer_props);
	rd_kafka_poll_set_consumer(consumer);
	parts = rd_kafka_topic_partition_list_new(partitions);
	for (int p = 0; p < partitions; p++)
		rd_kafka_topic_partition_list_add(parts, argv[2], p)->offset =
		    RD_KAFKA_OFFSET_BEGINNING;
	rd_kafka_assign(consumer, parts);
	rd_kafka_topic_partition_list_destroy(parts);
	f = fopen(argv[1], "w");
	if (!f || fprintf(f, "%s\n", bootstraps) < 0 || fclose(f) != 0) {
		fprintf(stderr, "kafka_mock: cannot write %s\n", argv[1]);
		return 2;
	}
	start = now_s();
	deadline = start + seconds;
	while (got < count && now_s() < deadline) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 100);

		if (!m)
			continue;
		if (!m->err) {
			if (got++ == 0)
				first = now_s();
			print_message(m);
		}
		rd_kafka_message_destroy(m);
	}
	fflush(stdout);
	fprintf(stderr, "kafka_mock: %d messages, %.3f s from the first to the last\n", got,
	        got ? now_s() - first : 0.0);
	rd_kafka_consumer_close(consumer);
	rd_kafka_destroy(consumer);
	rd_kafka_destroy(owner);
	return got >= count ? 0 : 1;
}
