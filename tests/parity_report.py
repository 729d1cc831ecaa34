"""Collects end-to-end parity figures so that the test run can report them."""
RESULTS = {}


def record(set_name, images, exact, worst_box, worst_conf):
    RESULTS[set_name] = (images, exact, worst_box, worst_conf)
