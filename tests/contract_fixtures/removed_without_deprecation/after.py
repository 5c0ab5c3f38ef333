from pydantic import BaseModel


class Input(BaseModel):
    age: int


class Output(BaseModel):
    score: float
