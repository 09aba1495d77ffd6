"""A small MCP server for the tests of Orchard's MCP port, written with the
official SDK's MCPServer (FastMCP before mcp 2), served over streamable HTTP
(--port) or stdio: two tools, a resource, a resource template and a
prompt; `touch`, which says a resource changed, `log`, which logs, and
`sprout`, which adds a tool (for the notices Orchard passes on); `hang`, a tool that
never answers, which writes "called" to the file named by --hang-log when it
starts and "cancelled" when the client cancels it, so a test can tell how
often Orchard sent it and that it was told to stop; and `crash`, which ends
the process."""

import argparse
import asyncio
import os

import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import Completion

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, help="serve streamable HTTP on this port (stdio without it)")
parser.add_argument("--hang-log", required=True)
args = parser.parse_args()

app = MCPServer("fixture")


@app.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@app.tool()
def shout(text: str) -> str:
    """Returns the text in capitals."""
    return text.upper()


@app.tool()
async def hang() -> str:
    """Never answers (for timeout tests)."""
    with open(args.hang_log, "a", encoding="utf-8") as log:
        log.write("called\n")
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        # notifications/cancelled arrived for this call.
        with open(args.hang_log, "a", encoding="utf-8") as log:
            log.write("cancelled\n")
        raise
    return "too late"


@app.tool()
async def grow(ctx: Context) -> str:
    """Adds a tool named `grown` and tells the client the list changed."""
    app.add_tool(lambda: "I am new", name="grown", description="Added by grow.")
    try:
        await ctx.session.send_tool_list_changed()
    except Exception:  # no session on the stateless protocol: subscribers only
        pass
    await ctx.notify_tools_changed()
    return "grown"


@app.tool()
async def sprout(name: str, ctx: Context) -> str:
    """Adds a tool named `sprout_<name>` and says the tool list changed."""
    app.add_tool(lambda: name, name=f"sprout_{name}", description="Added by sprout.")
    await ctx.session.send_tool_list_changed()
    return f"sprout_{name}"


@app.tool()
async def touch(uri: str, ctx: Context) -> str:
    """Says that the resource at `uri` changed."""
    await ctx.session.send_resource_updated(uri)
    return "touched"


@app.tool()
async def log(text: str, ctx: Context) -> str:
    """Logs `text` at info level."""
    await ctx.info(text)
    return "logged"


@app.tool()
def crash() -> str:
    """Ends this server's process at once (for restart tests)."""
    os._exit(3)


@app.resource("fixture://greeting")
def greeting() -> str:
    """A fixed text."""
    return "Hello from the fixture server."


@app.resource("fixture://notes/{name}")
def note(name: str) -> str:
    """A note, by name (a resource template)."""
    return f"Note {name}."


# Clients may subscribe to resources (the 2025 protocol's resources/subscribe).
async def subscribe(ctx, params):
    return types.EmptyResult()


app._lowlevel_server.add_request_handler("resources/subscribe", types.SubscribeRequestParams, subscribe)
app._lowlevel_server.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, subscribe)


@app.prompt()
def review(code: str, language: str = "python") -> str:
    """Asks for a code review."""
    return f"Please review this {language} code:\n{code}"


@app.completion()
async def complete(ref, argument, context):
    """Completes the review prompt's language."""
    if getattr(ref, "name", None) == "review" and argument.name == "language":
        names = ["python", "rust", "typescript", "ruby"]
        return Completion(values=[n for n in names if n.startswith(argument.value)])
    return None


if args.port is None:
    app.run("stdio")
else:
    app.run("streamable-http", host="127.0.0.1", port=args.port)
