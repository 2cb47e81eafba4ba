"""Development tools that run from the checkout and never ship in the wheel.

The private redis-server the tests and the demo start, ``make demo`` itself, its sample files, and the
example worker functions the tests and the demo enable.
"""
