"""The Celery configuration every process shares, and the light app producers publish with.

`configure` puts the settings into an app's ``conf``: the worker's app (`worker.app`, which also imports the
task modules) and a producer's (`producer_app`), which publishes by task name only and so never imports
the task modules, the OpenAI SDK or the poll loop: routing is by name (``aj.run.*`` to the runs queue...),
so a producer needs the routes, not the tasks.
"""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from worker.beat import beat_config
from worker.broker import broker_config, exchange_type, queue_arguments
from worker.settings import Settings

APP_NAME = "assistant_jobs"
"""The Celery app's main name, the same in workers and producers."""


def configure(app: Celery, s: Settings) -> None:
    """Put the settings into ``app.conf``."""
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        # Every task here is idempotent: a redelivered message finds the job's state and carries on.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=s.task_soft_time_limit,
        task_time_limit=s.task_time_limit,
        worker_send_task_events=True,
        # Each queue on its own direct exchange: a message lands in exactly one queue. Listed in the
        # order a worker serves them (queue_order_strategy "priority" below): a run that ended is
        # finished before new runs are started, so a burst of submits never delays learning of an end.
        task_queues=[
            Queue(q, Exchange(q, type=exchange_type(s)), routing_key=q, queue_arguments=queue_arguments(s))
            for q in (s.queue_runs_active, s.queue_runs, s.queue_indexing, s.queue_maintenance)
        ],
        task_default_queue=s.queue_runs,
        task_routes={
            "aj.run.finish": {"queue": s.queue_runs_active},
            "aj.run.finish_many": {"queue": s.queue_runs_active},
            "aj.run.tool_outputs": {"queue": s.queue_runs_active},
            "aj.run.cancel": {"queue": s.queue_runs_active},
            "aj.run.*": {"queue": s.queue_runs},
            "aj.index.*": {"queue": s.queue_indexing},
            "aj.cleanup.*": {"queue": s.queue_maintenance},
        },
        broker_connection_retry_on_startup=True,
        # Ride out a broker restart of a few seconds when publishing (a retry, a next step, a start).
        task_publish_retry_policy={
            "max_retries": 10,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 2,
        },
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=True,
    )
    # Beat (celery-redbeat): the clean-up sweeps' schedule and the lock that lets one beat fire them.
    app.conf.update(beat_config(s))
    # The broker: its URL, TLS, Sentinel or RabbitMQ options; on Redis, a worker sets a malformed message
    # aside rather than dying on it, and a killed worker's messages come back in seconds (worker.broker).
    app.conf.update(broker_config(s))


def producer_app(settings: Settings) -> Celery:
    """An app that publishes this system's tasks by name, configured like the workers' (routes, queues,
    serializer), with the publish hooks that show jobs in Flower (`worker.flower.install_task_display`)."""
    from worker.flower import install_task_display

    app = Celery(APP_NAME)
    configure(app, settings)
    install_task_display()
    return app
