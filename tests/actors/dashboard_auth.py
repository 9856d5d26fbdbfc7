"""An auth hook that lets only operators (``Authorization: Bearer ops``) see the
dashboard (its requests' actor_method is ``$overview`` or ``$inspect``); everything else
passes (the dashboard test's node serves no other HTTP)."""


def operators_only(request):
    if request.actor_method in ("$overview", "$inspect"):
        return "operator" if request.headers.get("authorization") == "Bearer ops" else None
    return "anyone"
