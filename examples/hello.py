"""The smallest headway program: a flow calling one task, recorded in the store."""

from headway import flow, task


@task
def greet(name: str) -> str:
    return f"hello, {name}"


@flow
def hello(name: str = "world") -> str:
    return greet(name)


if __name__ == "__main__":
    print(hello())
