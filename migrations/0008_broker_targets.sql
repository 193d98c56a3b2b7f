-- 0008_broker_targets.sql: a subscription's target may be a NATS JetStream
-- subject or a Kafka topic as well as an HTTP(S) url.
--
--   nats://host:4222/events.{event_type}      (tls://... with TLS)
--   kafka://host:9092/{aggregate_type}?key=...
--
-- Everything else about such a subscription (deliveries, leases, retries,
-- dead letters, the breaker) is the same as a webhook's. Changes no row.
ALTER TABLE subscriptions DROP CONSTRAINT IF EXISTS subscriptions_url_check;
ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_url_check
    CHECK (url ~* '^(https?|nats|tls|kafka)://');
