"""axe-core in the browser tests: WCAG 2.0, 2.1 and 2.2 at levels A and AA.

``assert_accessible(page, state)`` runs axe on what the page shows now and fails
with a readable list on any serious or critical violation; moderate and minor
ones are printed (pytest shows them with a failure), not failed.

axe.min.js is the copy shipped by the ``axe-playwright-python`` package (the
``test`` extra); only the script file is used. It cannot be added as a
``<script>``: the page's CSP allows scripts from its own origin only, and
Trusted Types would refuse the script's text. Playwright's ``evaluate`` goes
through the DevTools protocol, which the page's CSP does not govern, so the
source runs in the page's own world as it is. axe's run itself needs no
string-to-code sink with its default messages (its template compiler is used
only for messages given as code), so it trips no CSP or Trusted Types check;
the scenario's CSP witness (tests/browser.py) stays on and would report it if
a later axe did.
"""

from importlib.resources import files
from typing import Any, Final

from playwright.sync_api import Page

# The success criteria checked: everything WCAG 2.2 AA asks that axe can test.
WCAG_TAGS: Final = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
# Off by default in axe (experimental) but a WCAG 2.1 A criterion (2.5.3, label
# in name): a control's accessible name must contain its visible text.
EXTRA_RULES: Final = {"label-content-name-mismatch": {"enabled": True}}
FAILING_IMPACTS: Final = frozenset({"serious", "critical"})

_source: list[str] = []  # axe.min.js, read once per test process


def axe_source() -> str:
    if not _source:
        script = files("axe_playwright_python") / "axe.min.js"
        _source.append(script.read_text(encoding="utf-8"))
    return _source[0]


def run_axe(page: Page) -> list[dict[str, Any]]:
    """axe's violations for the page as it is now (loading axe into it if needed)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe_source())
    violations: list[dict[str, Any]] = page.evaluate(
        """async ([tags, rules]) => {
          // A message fading in is not yet the colours a person reads.
          await Promise.all(document.getAnimations().map((a) => a.finished));
          const result = await axe.run(document, {
            runOnly: { type: "tag", values: tags },
            rules,
            resultTypes: ["violations"],
          });
          return result.violations.map((v) => ({
            id: v.id,
            impact: v.impact,
            help: v.help,
            nodes: v.nodes.map((n) => ({
              target: n.target.map(String),
              impact: n.impact,
              summary: n.failureSummary,
            })),
          }));
        }""",
        [WCAG_TAGS, EXTRA_RULES],
    )
    return violations


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for violation in violations:
        lines.append(f"- {violation['id']} ({violation['impact']}): {violation['help']}")
        for node in violation["nodes"]:
            target = " ".join(node["target"])
            summary = " / ".join(line.strip() for line in node["summary"].splitlines()[1:])
            lines.append(f"    {target}: {summary}")
    return "\n".join(lines)


def assert_accessible(page: Page, state: str) -> None:
    """No serious or critical axe violation in ``state`` (a name for the report)."""
    violations = run_axe(page)
    failing = [v for v in violations if v["impact"] in FAILING_IMPACTS]
    others = [v for v in violations if v["impact"] not in FAILING_IMPACTS]
    if others:
        print(f"axe, {state}: moderate or minor\n{describe(others)}")
    assert not failing, f"axe, {state}: serious or critical\n{describe(failing)}"
