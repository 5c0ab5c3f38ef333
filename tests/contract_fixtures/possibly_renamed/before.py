from pydantic import BaseModel, Field


class Input(BaseModel):
    age: int
    zip_code: str = Field(pattern=r"^[0-9]{5}$", description="Where the customer lives.")


class Output(BaseModel):
    score: float
