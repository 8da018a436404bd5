"""User-agent classification: Postmark's ``Platform``, ``Client`` and ``OS`` of the reader behind
an open or a click, read with ua-parser and named as mail senders know them.
"""

import ua_parser

DESKTOP, MOBILE, WEBMAIL, UNKNOWN = "Desktop", "Mobile", "WebMail", "Unknown"

# ua-parser's family → the name mail senders know it by. Image proxies stand for the webmail
# that fetches images for its readers; iOS Mail loads them in a web view without "Safari".
CLIENT_NAMES = {
    "GmailImageProxy": "Gmail",
    "YahooMailProxy": "Yahoo Mail",
    "Mobile Safari UI/WKWebView": "Apple Mail",
}
OS_NAMES = {"Mac OS X": "OS X"}
WEBMAIL_CLIENTS = {"Gmail", "Yahoo Mail"}
# Whose version ua-parser reads from something else (Apple Mail: the WebKit build).
UNVERSIONED_CLIENTS = {"Gmail", "Yahoo Mail", "Apple Mail"}
MOBILE_SYSTEMS = {"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "HarmonyOS"}
COMPANIES = {
    "Gmail": "Google", "Chrome": "Google", "Chrome Mobile": "Google",
    "Chrome Mobile iOS": "Google", "Chrome Mobile WebView": "Google", "Android": "Google",
    "Chrome OS": "Google", "Yahoo Mail": "Yahoo", "Firefox": "Mozilla",
    "Firefox Mobile": "Mozilla", "Firefox iOS": "Mozilla", "Thunderbird": "Mozilla",
    "Safari": "Apple Inc.", "Mobile Safari": "Apple Inc.", "Apple Mail": "Apple Inc.",
    "iOS": "Apple Inc.", "OS X": "Apple Inc.", "Edge": "Microsoft Corporation",
    "Edge Mobile": "Microsoft Corporation", "IE": "Microsoft Corporation",
    "Outlook": "Microsoft Corporation", "Windows Live Mail": "Microsoft Corporation",
    "Windows": "Microsoft Corporation", "Windows Phone": "Microsoft Corporation",
    "Opera": "Opera Software", "Samsung Internet": "Samsung",
}  # fmt: skip


def _described(family: str, *version) -> dict:
    numbers = ".".join(v for v in version if v)
    return {
        "Name": f"{family} {numbers}".strip(),
        "Company": COMPANIES.get(family, UNKNOWN),
        "Family": family,
    }


def classify_user_agent(user_agent: str) -> dict:
    """Postmark's ``Platform``, ``Client`` and ``OS`` for a user agent, from ua-parser (the
    Browserscope rules of uap-core, shipped by ``ua-parser-builtins``)."""
    unknown = {"Name": UNKNOWN, "Company": UNKNOWN, "Family": UNKNOWN}
    try:
        parsed = ua_parser.parse(user_agent or "")
    except Exception:  # a user agent is the reader's input: never fail an open on it
        parsed = None
    agent = parsed.user_agent if parsed is not None else None
    system = parsed.os if parsed is not None else None
    client = dict(unknown)
    if agent is not None and agent.family not in ("Other", ""):
        family = CLIENT_NAMES.get(agent.family, agent.family)
        version = () if family in UNVERSIONED_CLIENTS else (agent.major, agent.minor)
        client = _described(family, *version)
    os = dict(unknown)
    proxied = client["Family"] in WEBMAIL_CLIENTS  # a proxy's OS says nothing about the reader
    if system is not None and system.family not in ("Other", "") and not proxied:
        family = OS_NAMES.get(system.family, system.family)
        os = _described(family, system.major, system.minor)
    if client["Family"] in WEBMAIL_CLIENTS:
        platform = WEBMAIL
    elif os["Family"] in MOBILE_SYSTEMS or "Mobile" in client["Family"]:
        platform = MOBILE
    elif client["Family"] != UNKNOWN or os["Family"] != UNKNOWN:
        platform = DESKTOP
    else:
        platform = UNKNOWN
    return {"Platform": platform, "Client": client, "OS": os}
