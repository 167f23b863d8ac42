"""A handlers module whose routes conflict: startup must refuse it in one line."""

from trio_router import App, Request

app = App()


@app.route("GET", "/pets/{pet_id}")
def by_id(request: Request) -> str:
    return "id"


@app.route("GET", "/pets/{name}")
def by_name(request: Request) -> str:
    return "name"
