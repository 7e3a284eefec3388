"""`@postOnly`: a field whose arguments must never sit in a URL (GraphQL over GET).

The directive lands in `schema.graphql`, so that clients see which fields to send in a POST
body, and api/extensions/post_only.py reads it back from the schema: a GET request whose
document selects such a field anywhere (an alias, a fragment, a persisted document named by
its id) is refused before it runs, with 405 and `Allow: POST`, as a mutation over GET is.
"""

from __future__ import annotations

import strawberry
from strawberry.schema_directive import Location


@strawberry.schema_directive(
    name="postOnly",
    locations=[Location.FIELD_DEFINITION],
    description=(
        "This field is served over POST only: a GET request whose document selects it "
        "(under any alias, in any fragment, or as a persisted document named by its id) is "
        "refused before it runs, with HTTP 405, `Allow: POST` and BAD_USER_INPUT. `reason` "
        "says why its arguments must not sit in a URL."
    ),
)
class PostOnly:
    reason: str


# A NIR in a query string would land in browser histories and in every proxy's access log.
NIR_POST_ONLY = PostOnly(reason="A NIR never sits in a URL or in a proxy's access log.")


__all__ = ["NIR_POST_ONLY", "PostOnly"]
