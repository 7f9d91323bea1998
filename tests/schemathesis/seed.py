"""Seeds a fresh Loom for schemathesis: logs in as the admin `run.sh` created, files a little of
everything (a project, beads with a dependency and a comment, an agent, a schedule, a
conversation), writes their ids as schemathesis dictionaries (TOML, to the path it is given) for
the routes taking an id to find something, and prints an API token on stdout.

Only the standard library: it runs in schemathesis's virtualenv but needs nothing from it.
"""

import json
import sys
import urllib.request


def call(base, method, path, body=None, token=None):
    req = urllib.request.Request(f"{base}{path}", method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, data) as res:
        text = res.read()
    return json.loads(text) if text else None


def main(base, username, password, repo, dictionaries):
    login = {"username": username, "password": password, "token": True}
    token = call(base, "POST", "/api/v1/auth/login", login)["token"]

    def post(path, body):
        return call(base, "POST", path, body, token)

    project = post("/api/v1/projects", {"id": "web", "name": "Web", "repo": repo})
    first = post("/api/v1/beads", {"project": "web", "title": "Draw the login page"})
    second = post(
        "/api/v1/beads",
        {
            "project": "web",
            "title": "Wire the login form",
            "priority": 1,
            "labels": ["auth"],
            "depends_on": [first["id"]],
        },
    )
    post(f"/api/v1/beads/{second['id']}/comments", {"body": "@admin see the mockups"})
    post(f"/api/v1/beads/{first['id']}/block", {"reason": "waiting for the mockups"})
    agent = post("/api/v1/agents", {"name": "ada", "persona": "software-engineer", "project": "web"})
    schedule = post(
        "/api/v1/schedules",
        {"project": "web", "cron": "0 9 * * 1", "bead": {"title": "Weekly dependency update"}},
    )
    conversation = post(
        "/api/v1/conversations", {"project": "web", "agent": agent["id"], "bead": second["id"]}
    )
    found = {
        "project": [project["id"]],
        "bead": [first["id"], second["id"]],
        "agent": [agent["id"]],
        "schedule": [schedule["id"]],
        "conversation": [conversation["id"]],
        "persona": ["software-engineer"],
    }
    with open(dictionaries, "w") as out:
        for name, values in found.items():
            out.write(f"[dictionaries.{name}]\nvalues = {json.dumps(values)}\n\n")
    print(token)


if __name__ == "__main__":
    main(*sys.argv[1:])
