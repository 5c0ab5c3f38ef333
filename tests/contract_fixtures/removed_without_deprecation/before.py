from pydantic import BaseModel


class Input(BaseModel):
    age: int
    nickname: str | None = None


class Output(BaseModel):
    score: float
