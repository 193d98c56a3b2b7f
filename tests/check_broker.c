/* check_broker.c -- broker targets: urls, templates, and per-key order in the Kafka transport. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>

#include <librdkafka/rdkafka.h>
#include <nats/nats.h>
#include <librdkafka/rdkafka_mock.h>

#include "src/broker.h"
#include "src/transport.h"
#include "src/util.h"
#include "tests/check_unit.h"

static const char body[] =
    "{\"id\": \"e1\", \"type\": \"order.paid\", \"timestamp\": \"2026-01-01T00:00:00.000000Z\","
    " \"aggregate\": {\"id\": \"o 1*\", \"type\": \"order\"}, \"data\": {}}";

START_TEST(test_url_splits_user_hosts_template_and_decoded_parameters)
{
	struct broker_url u;
	char err[256];

	ck_assert(broker_url_parse("kafka://svc@k1:9092,k2:9092/t.{event_type}?key=%7Bid%7D&"
	                           "security.protocol=SASL_SSL&ordered",
	                           &u, err, sizeof(err)));
	ck_assert_str_eq(u.scheme, "kafka");
	ck_assert_str_eq(u.user, "svc");
	ck_assert_str_eq(u.hosts, "k1:9092,k2:9092");
	ck_assert_str_eq(u.path, "t.{event_type}");
	ck_assert_str_eq(broker_url_param(&u, "key"), "{id}");
	ck_assert_str_eq(broker_url_param(&u, "security.protocol"), "SASL_SSL");
	ck_assert(broker_url_flag(&u, "ordered"));
	ck_assert(!broker_url_flag(&u, "tls"));
	broker_url_release(&u);
}
END_TEST

START_TEST(test_url_with_a_password_is_refused_without_quoting_it)
{
	struct broker_url u;
	char err[256];

	ck_assert(!broker_url_parse("nats://alice:hunter2@h:4222/s", &u, err, sizeof(err)));
	ck_assert_ptr_null(strstr(err, "hunter2"));
	ck_assert_ptr_nonnull(strstr(err, "password"));
}
END_TEST

START_TEST(test_template_takes_the_event_fields)
{
	struct broker_event ev;
	char err[256], *s, *key;

	ck_assert(broker_event_parse(body, &ev, err, sizeof(err)));
	s = broker_expand("x.{event_type}.{aggregate_type}.{id}", &ev, false, err, sizeof(err));
	ck_assert_str_eq(s, "x.order.paid.order.e1");
	free(s);
	/* a subject token holds no space, '*' or '>' */
	s = broker_expand("a.{aggregate_id}", &ev, true, err, sizeof(err));
	ck_assert_str_eq(s, "a.o_1_");
	free(s);
	key = broker_event_key(&ev);
	ck_assert_str_eq(key, "order/o 1*");
	free(key);
	ck_assert_ptr_null(broker_expand("{nope}", &ev, false, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "unknown field nope"));
	ck_assert_ptr_null(broker_expand("{id", &ev, false, err, sizeof(err)));
	broker_event_release(&ev);
}
END_TEST

START_TEST(test_event_without_aggregate_has_no_key)
{
	struct broker_event ev;
	char err[256], *key, *s;

	ck_assert(broker_event_parse("{\"id\": \"e\", \"type\": \"t\", \"aggregate\": null}", &ev,
	                             err, sizeof(err)));
	key = broker_event_key(&ev);
	ck_assert_str_eq(key, "");
	free(key);
	s = broker_expand("s.{aggregate_id}", &ev, true, err, sizeof(err));
	ck_assert_str_eq(s, "s._");
	free(s);
	broker_event_release(&ev);
	ck_assert(!broker_event_parse("[1]", &ev, err, sizeof(err)));
}
END_TEST

/* Properties that load code, run a command or hold a secret are refused,
 * by name, at `subscriptions add` (broker_url_check) and at each send. */
START_TEST(test_kafka_url_properties_are_an_allowlist)
{
	static const char *const refused[] = {
		"plugin.library.paths=/tmp/x.so",
		"sasl.kerberos.kinit.cmd=touch%20/tmp/p",
		"ssl.engine.location=/tmp/e.so",
		"sasl.password=x",
		"ssl.key.password=x",
		"enable.ssl.certificate.verification=false",
		"enable.idempotence=false",
		"sasl.oauthbearer.config=x",
	};
	char err[256], url[256];

	ck_assert(broker_url_check("kafka://svc@k:9092/t?security.protocol=SASL_SSL&"
	                           "sasl.mechanisms=SCRAM-SHA-512&ssl.ca.location=/etc/ca.pem&"
	                           "compression.type=zstd&linger.ms=5&client.id=me&key={id}",
	                           err, sizeof(err)));
	/* the names NATS takes are no Kafka properties, and are not refused */
	ck_assert(broker_url_check("nats://h:4222/s?plugin.library.paths=x", err, sizeof(err)));
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		snprintf(url, sizeof(url), "kafka://k:9092/t?linger.ms=1&%s", refused[i]);
		ck_assert_msg(!broker_url_check(url, err, sizeof(err)), "%s", refused[i]);
		ck_assert_msg(strncmp(err, "Kafka property ", 15) == 0 &&
		                  strncmp(err + 15, refused[i], strcspn(refused[i], "=")) == 0,
		              "%s", err);
	}
}
END_TEST

/* The transport refuses such a url before librdkafka sees it: the send
 * is unsendable (NULL), whatever the cluster. */
START_TEST(test_kafka_send_refuses_a_property_not_allowed)
{
	const struct relay_config rc = { .connect_timeout_ms = 2000 };
	struct transport_result res;
	char err[256];
	struct transport_message m = {
		.id = "d1",
		.body = "{\"id\": \"e\", \"type\": \"t\", \"aggregate\": null}",
		.target = "kafka://127.0.0.1:1/t?sasl.kerberos.kinit.cmd=touch%20/tmp/pwned",
		.secret = "",
		.headers = "{}",
		.timeout_ms = 1000,
	};
	void *tp = transport_kafka.open(&rc, 1);

	ck_assert_ptr_nonnull(tp);
	memset(&res, 0, sizeof(res));
	ck_assert_ptr_null(transport_kafka.send(tp, &m, &res, NULL, err, sizeof(err)));
	ck_assert_msg(strstr(err, "sasl.kerberos.kinit.cmd is not one a url may set"), "%s", err);
	m.target = "kafka://127.0.0.1:1/t?plugin.library.paths=/tmp/evil.so";
	ck_assert_ptr_null(transport_kafka.send(tp, &m, &res, NULL, err, sizeof(err)));
	ck_assert_msg(strstr(err, "plugin.library.paths is not one a url may set"), "%s", err);
	transport_kafka.close(tp);
}
END_TEST

static void on_connected(natsConnection *nc, void *closure)
{
	(void)nc;
	(void)closure;
}

static void on_counted(void *arg, void *owner)
{
	(void)owner;
	(*(int *)arg)++;
}

/*
 * A close whose nats_CloseAndWait times out (here: a connection the test
 * still holds, retrying in the background, keeps the library open) leaves the sink, which a
 * libnats thread may still be using, alive: its eventfd stays open.
 */
START_TEST(test_nats_close_that_times_out_leaves_the_sink)
{
	const struct relay_config rc = { .connect_timeout_ms = 500 };
	struct transport_result res;
	struct transport_waitfd fds[1];
	char err[256];
	struct transport_message m = {
		.id = "d1",
		.body = "{\"id\": \"e\", \"type\": \"t\", \"aggregate\": null}",
		.target = "nats://127.0.0.1:1/s.{event_type}",
		.secret = "",
		.headers = "{}",
		.timeout_ms = 10000, /* the connect thread's bound: the loop below */
	};
	natsOptions *o = NULL;
	natsConnection *held = NULL;
	void *tp = transport_nats.open(&rc, 1);
	void *h;
	int finished = 0;

	ck_assert_ptr_nonnull(tp);
	ck_assert_uint_eq(transport_nats.waitfds(tp, fds, 1), 1);
	memset(&res, 0, sizeof(res));
	h = transport_nats.send(tp, &m, &res, NULL, err, sizeof(err)); /* nothing listens */
	ck_assert_ptr_nonnull(h);
	/* the connect runs on its own thread: its failure comes through progress */
	for (int i = 0; i < 100 && !finished; i++) {
		transport_nats.wait(tp, NULL, 0, 100);
		transport_nats.progress(tp, on_counted, &finished);
	}
	ck_assert_int_eq(finished, 1);
	ck_assert_int_eq(res.verdict, WEBHOOK_RETRY);
	ck_assert_msg(strstr(res.error, "cannot connect to nats://127.0.0.1:1"), "%s", res.error);
	ck_assert_int_eq(natsOptions_Create(&o), NATS_OK);
	ck_assert_int_eq(natsOptions_SetURL(o, "nats://127.0.0.1:1"), NATS_OK);
	ck_assert_int_eq(natsOptions_SetRetryOnFailedConnect(o, true, on_connected, NULL), NATS_OK);
	ck_assert_int_eq(natsConnection_Connect(&held, o), NATS_NOT_YET_CONNECTED);
	transport_nats.close(tp);
	ck_assert_msg(fcntl(fds[0].fd, F_GETFD) != -1, "the sink's eventfd was closed");
	natsConnection_Destroy(held);
	natsOptions_Destroy(o);
}
END_TEST

/* The error of one NATS send to `target` (nothing listens on port 1). */
static void nats_error_of(const char *target, char *out, size_t outlen)
{
	const struct relay_config rc = { .connect_timeout_ms = 500 };
	struct transport_result res;
	char err[256];
	struct transport_message m = {
		.id = "d2",
		.body = "{\"id\": \"e\", \"type\": \"t\", \"aggregate\": null}",
		.target = target,
		.secret = "",
		.headers = "{}",
		.timeout_ms = 10000,
	};
	void *tp = transport_nats.open(&rc, 1);
	int finished = 0;

	ck_assert_ptr_nonnull(tp);
	memset(&res, 0, sizeof(res));
	ck_assert_ptr_nonnull(transport_nats.send(tp, &m, &res, NULL, err, sizeof(err)));
	for (int i = 0; i < 100 && !finished; i++) {
		transport_nats.wait(tp, NULL, 0, 100);
		transport_nats.progress(tp, on_counted, &finished);
	}
	ck_assert_int_eq(finished, 1);
	ck_assert_int_eq(res.verdict, WEBHOOK_RETRY);
	snprintf(out, outlen, "%s", res.error);
	transport_nats.close(tp);
}

/* The files a url names are checked only where the connection reads them:
 * ca= without TLS, key= without cert= and seed= without nkey= or creds=
 * are ignored, as they always were; with TLS an unreadable ca= is named. */
START_TEST(test_nats_checks_only_the_files_it_reads)
{
	char e[TRANSPORT_ERRLEN];

	nats_error_of(
	    "nats://127.0.0.1:1/s?ca=/nonexistent/ca.pem&key=/nonexistent/k&seed=/nonexistent/s", e,
	    sizeof(e));
	ck_assert_msg(strstr(e, "cannot connect to nats://127.0.0.1:1") == e, "%s", e);
	nats_error_of("tls://127.0.0.1:1/s?ca=/nonexistent/ca.pem", e, sizeof(e));
	ck_assert_str_eq(e, "cannot read ca=/nonexistent/ca.pem: No such file or directory");
	nats_error_of("nats://127.0.0.1:1/s?cert=/etc/passwd&key=/nonexistent/k", e, sizeof(e));
	ck_assert_str_eq(e, "cannot read key=/nonexistent/k: No such file or directory");
	nats_error_of("nats://127.0.0.1:1/s?nkey=UABC", e, sizeof(e));
	ck_assert_msg(strstr(e, "nkey= needs seed="), "%s", e);
}
END_TEST

/* A value's dots make no subject tokens: only the event type's, which
 * are its hierarchy, and never an empty token. */
START_TEST(test_subject_values_make_no_tokens)
{
	struct broker_event ev;
	char err[256], *s;

	ck_assert(broker_event_parse("{\"id\": \"e.1\", \"type\": \".order..paid.\", "
	                             "\"aggregate\": {\"type\": \"a..b\", \"id\": \"1.admin\"}}",
	                             &ev, err, sizeof(err)));
	s = broker_expand("x.{aggregate_type}.{aggregate_id}.{id}", &ev, true, err, sizeof(err));
	ck_assert_str_eq(s, "x.a__b.1_admin.e_1");
	free(s);
	s = broker_expand("x.{event_type}", &ev, true, err, sizeof(err));
	ck_assert_str_eq(s, "x._order._paid_");
	free(s);
	/* a Kafka topic is no subject: dots stay */
	s = broker_expand("{aggregate_id}", &ev, false, err, sizeof(err));
	ck_assert_str_eq(s, "1.admin");
	free(s);
	broker_event_release(&ev);
	ck_assert(broker_event_parse(body, &ev, err, sizeof(err)));
	s = broker_expand("events.{event_type}", &ev, true, err, sizeof(err));
	ck_assert_str_eq(s, "events.order.paid");
	free(s);
	broker_event_release(&ev);
}
END_TEST

/* relay.block_private_networks on broker hosts: each host of the list is
 * resolved, one refused address refuses the list, named in the error. */
START_TEST(test_broker_hosts_blocked)
{
	char err[256] = "";

	ck_assert(
	    !broker_hosts_blocked("192.0.2.1:4222,[2001:db8::1]:9092", "4222", err, sizeof(err)) ||
	    !"documentation addresses are not refused");
	ck_assert(!broker_hosts_blocked("8.8.8.8:4222,1.1.1.1", "4222", err, sizeof(err)));
	ck_assert(broker_hosts_blocked("8.8.8.8:4222,127.0.0.1:4222", "4222", err, sizeof(err)));
	ck_assert_str_eq(err, "refused: broker 127.0.0.1:4222 resolves to a loopback, private or "
	                      "link-local address (relay.block_private_networks)");
	ck_assert(broker_hosts_blocked("10.1.2.3", "9092", err, sizeof(err)));
	ck_assert(broker_hosts_blocked("[::1]:9092", "9092", err, sizeof(err)));
	ck_assert(broker_hosts_blocked("::ffff:169.254.169.254", "9092", err, sizeof(err)));
	ck_assert(broker_hosts_blocked("localhost:4222", "4222", err, sizeof(err)));
}
END_TEST

/* ---- the Kafka transport against the mock cluster ---------------------------- */

struct finished {
	int n;
	int order[4];
};

static void on_done(void *arg, void *owner)
{
	struct finished *f = arg;

	f->order[f->n++] = (int)(intptr_t)owner;
}

/*
 * Two messages of one aggregate: the first to a topic the cluster says
 * does not exist, the second to one that does, with order keys k0 and k1.
 * Of one key, the second is held behind the first and fails with it (it
 * would otherwise overtake it); without a key, or of another key (another
 * subscription's), the second is stored.
 */
static void send_two(const char *k0, const char *k1, struct transport_result res[2],
                     struct finished *f)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char err[256], url[512];
	rd_kafka_t *owner;
	rd_kafka_mock_cluster_t *mc;
	const struct relay_config rc = { .connect_timeout_ms = 2000 };
	void *tp;

	ck_assert_int_eq(rd_kafka_conf_set(conf, "test.mock.num.brokers", "1", err, sizeof(err)),
	                 RD_KAFKA_CONF_OK);
	ck_assert_int_eq(rd_kafka_conf_set(conf, "log_level", "0", err, sizeof(err)),
	                 RD_KAFKA_CONF_OK);
	owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	ck_assert_ptr_nonnull(owner);
	mc = rd_kafka_handle_mock_cluster(owner);
	rd_kafka_mock_topic_create(mc, "ok", 1, 1);
	rd_kafka_mock_topic_set_error(mc, "missing", RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
	/* ordered=1 in a url no longer means anything (migration 0009) */
	snprintf(url, sizeof(url), "kafka://%s/{aggregate_type}?key=k&ordered=1",
	         rd_kafka_mock_cluster_bootstraps(mc));
	tp = transport_kafka.open(&rc, 4);
	ck_assert_ptr_nonnull(tp);
	for (int i = 0; i < 2; i++) {
		char b[256], id[16];
		struct transport_message m = { .id = id,
			                       .body = b,
			                       .target = url,
			                       .secret = "",
			                       .headers = "{}",
			                       .timeout_ms = 3000,
			                       .order_key = i == 0 ? k0 : k1 };

		snprintf(id, sizeof(id), "d%d", i);
		snprintf(b, sizeof(b),
		         "{\"id\": \"e%d\", \"type\": \"t\", \"aggregate\": {\"type\": \"%s\", "
		         "\"id\": \"1\"}}",
		         i, i == 0 ? "missing" : "ok");
		ck_assert_ptr_nonnull(
		    transport_kafka.send(tp, &m, &res[i], (void *)(intptr_t)i, err, sizeof(err)));
	}
	for (int i = 0; i < 100 && f->n < 2; i++) {
		struct transport_waitfd fds[1];
		unsigned n = transport_kafka.waitfds(tp, fds, 1);

		transport_kafka.wait(tp, fds, n, 100);
		transport_kafka.progress(tp, on_done, f);
	}
	transport_kafka.close(tp);
	rd_kafka_destroy(owner);
}

START_TEST(test_kafka_ordered_key_never_overtakes_a_failed_message)
{
	struct transport_result res[2];
	struct finished f = { 0 };

	memset(res, 0, sizeof(res));
	send_two("sub-1 a:order:1", "sub-1 a:order:1", res, &f);
	ck_assert_int_eq(f.n, 2);
	ck_assert_int_eq(res[0].verdict, WEBHOOK_RETRY);
	ck_assert_msg(strncmp(res[0].error, "Kafka: ", 7) == 0, "%s", res[0].error);
	ck_assert_int_eq(res[1].verdict, WEBHOOK_RETRY);
	ck_assert_ptr_nonnull(strstr(res[1].error, "delivery d0 of the same key"));
}
END_TEST

START_TEST(test_kafka_unordered_messages_go_on_their_own)
{
	struct transport_result res[2];
	struct finished f = { 0 };

	memset(res, 0, sizeof(res));
	send_two(NULL, NULL, res, &f);
	ck_assert_int_eq(f.n, 2);
	ck_assert_int_eq(res[0].verdict, WEBHOOK_RETRY);
	ck_assert_int_eq(res[1].verdict, WEBHOOK_DELIVERED);
	ck_assert_str_eq(res[1].error, "");
}
END_TEST

START_TEST(test_kafka_same_key_of_another_subscription_goes_on)
{
	struct transport_result res[2];
	struct finished f = { 0 };

	memset(res, 0, sizeof(res));
	send_two("sub-1 a:order:1", "sub-2 a:order:1", res, &f);
	ck_assert_int_eq(f.n, 2);
	ck_assert_int_eq(res[0].verdict, WEBHOOK_RETRY);
	ck_assert_int_eq(res[1].verdict, WEBHOOK_DELIVERED);
}
END_TEST

Suite *broker_suite(void)
{
	Suite *s = suite_create("broker");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_url_splits_user_hosts_template_and_decoded_parameters);
	tcase_add_test(tc, test_url_with_a_password_is_refused_without_quoting_it);
	tcase_add_test(tc, test_template_takes_the_event_fields);
	tcase_add_test(tc, test_event_without_aggregate_has_no_key);
	tcase_add_test(tc, test_subject_values_make_no_tokens);
	tcase_add_test(tc, test_broker_hosts_blocked);
	tcase_add_test(tc, test_kafka_url_properties_are_an_allowlist);
	tcase_add_test(tc, test_kafka_send_refuses_a_property_not_allowed);
	tcase_add_test(tc, test_nats_close_that_times_out_leaves_the_sink);
	tcase_add_test(tc, test_nats_checks_only_the_files_it_reads);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_kafka_ordered_key_never_overtakes_a_failed_message);
	tcase_add_test(tc, test_kafka_unordered_messages_go_on_their_own);
	tcase_add_test(tc, test_kafka_same_key_of_another_subscription_goes_on);
	suite_add_tcase(s, tc);
	return s;
}
