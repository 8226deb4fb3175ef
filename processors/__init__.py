"""Faust processors: the app factory, agents, and demo services.

``APPS`` maps the names ``relay worker <name>`` accepts to their factories; any
``module:function`` taking Settings also works.
"""

APPS = {
    "orders": "processors.orders:create_app",
}
