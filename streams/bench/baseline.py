"""The baseline: a raw aiokafka chain with the pipeline's number of hops and its codec,
passing each record on with no logic (decode, encode, produce)."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging

from connectors import kafka_connect
from connectors.kafka import KafkaSettings
from schemas.codec import Codec

_log = logging.getLogger(__name__)


async def forward(
    kafka: KafkaSettings, source: str, sink: str, group: str, ready: asyncio.Event
) -> None:
    codec = Codec()
    consumer = kafka_connect.consumer(
        kafka, source, group_id=group, auto_offset_reset="latest", enable_auto_commit=True
    )
    producer = kafka_connect.producer(kafka, linger_ms=1, acks=1)
    await kafka_connect.start(consumer, kafka)
    await kafka_connect.start(producer, kafka)
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        for tp in consumer.assignment():
            await consumer.position(tp)
        ready.set()
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for r in records:
                    event = codec.decode_any(r.value)
                    await producer.send(sink, codec.encode(event), key=r.key)
    finally:
        await consumer.stop()
        await producer.stop()


async def main(kafka: KafkaSettings, chain: list[str], group: str) -> None:
    readies = [asyncio.Event() for _ in chain[:-1]]
    hops = [
        asyncio.create_task(forward(kafka, a, b, f"{group}-{i}", readies[i]))
        for i, (a, b) in enumerate(itertools.pairwise(chain))
    ]
    await asyncio.gather(*(r.wait() for r in readies))
    _log.warning("baseline ready")  # the harness waits for this line
    await asyncio.gather(*hops)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--chain", required=True, help="comma-separated topics, first to last")
    parser.add_argument("--group", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    # The bench's own environment carries the connection settings; the address is its.
    kafka = KafkaSettings(bootstrap_servers=args.bootstrap)
    asyncio.run(main(kafka, args.chain.split(","), args.group))
