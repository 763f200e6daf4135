"""The demo federation (``genogate-demo``, ``make demo``): a CA, a coordinator and three nodes on loopback,
set up and questioned the way people would (``genogate_demo.run``).

A package of its own, beside ``genogate``, ``node`` and ``coordinator``: it drives all three, so the shared
package need not import either side."""
