"""The outbound business-event stream: outbox rows -> NATS JetStream (PublishPaymentEvent and
the rest), for consumers beyond the three systems (provisioning, the data warehouse).

Flows write business events with ``ctx.publish`` in the commit that makes them true
(``engine.outbox``); ``BusPublisher`` sends them in outbox order with their message id as
``Nats-Msg-Id``; ``docs/asyncapi.yaml`` documents every type in ``catalog``.
"""
