"""A small MCP server for the tests of Orchard's MCP port, written with the
official SDK's MCPServer (FastMCP before mcp 2) and served over streamable
HTTP: two tools, a resource and a prompt, and `hang`, a tool that never
answers. Each call of `hang` adds a line to the file named by --hang-log, so
a test can count how many times Orchard sent it."""

import argparse
import asyncio

from mcp.server.mcpserver import MCPServer

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
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
    await asyncio.sleep(3600)
    return "too late"


@app.resource("fixture://greeting")
def greeting() -> str:
    """A fixed text."""
    return "Hello from the fixture server."


@app.prompt()
def review(code: str) -> str:
    """Asks for a code review."""
    return f"Please review this code:\n{code}"


app.run("streamable-http", host="127.0.0.1", port=args.port)
