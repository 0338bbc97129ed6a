"""The system's expected failures as `dispatch` answers them: one clear line and a non-zero exit (2 for an
option to correct), never a traceback."""

from __future__ import annotations

from typing import Any

import click


class DispatchGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        from services.dispatcher.submit import BrokerUnreachable
        from shared.contract import BadOption
        from shared.errors import UserFacingError
        from shared.jobs import NotFound

        try:
            return super().invoke(ctx)
        except NotFound as error:
            raise click.ClickException(
                f"no {error.args[0]} in the job table; `dispatch jobs --all` lists them"
            ) from error
        except BadOption as error:
            raise click.BadParameter(str(error), param_hint=error.option) from error
        except (UserFacingError, BrokerUnreachable) as error:
            raise click.ClickException(str(error)) from error
        except Exception as error:
            from sqlalchemy.exc import DBAPIError

            if not isinstance(error, DBAPIError):
                raise
            raise click.ClickException(_job_table_unusable(error)) from error


def _job_table_unusable(error: Any) -> str:
    from shared.redact import redact_text, redact_url
    from shared.settings import get_settings

    return (
        f"cannot use the job table at {redact_url(get_settings().db_url)} "
        f"({redact_text(str(error.orig)).strip().splitlines()[0]}); "
        "check DATABASE_URL, or run `make up` (it migrates the table)"
    )
